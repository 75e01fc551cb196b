"""The command line as a new user meets it: every subcommand, exit codes, one-line errors,
no partial output files."""

import csv
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mechsim.cli import EXAMPLES as HELP_EXAMPLES
from mechsim.cli import main

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples", "scenarios")
ISA = ("10 mg/kg iv over 1 h on days 1,8,15,22 of 28-day cycle x 1 "
       "then on days 1,15 of 28-day cycles")


def run(*args, cwd=None):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "mechsim", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300, env=env)


def test_version_help_and_list_from_another_directory(tmp_path):
    version = run("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("mechsim ")
    helptext = run("--help", cwd=tmp_path)
    assert helptext.returncode == 0 and "mechsim run icaria_mm" in helptext.stdout
    for sub, example in HELP_EXAMPLES.items():
        proc = run(sub, "--help", cwd=tmp_path)
        assert proc.returncode == 0 and f"example:\n  {example}\n" in proc.stdout, sub
    listing = run("list", cwd=tmp_path)
    assert listing.returncode == 0
    for name in ("cd38_myeloma", "cd40_apc", "isatuximab_poppk", "one_compartment",
                 "isatuximab", "iscalimab", "pomalidomide_dex", "icaria_population",
                 "icaria_mm", "iscalimab_q4w"):
        assert f"\n  {name} " in listing.stdout


@pytest.mark.parametrize("sub", list(HELP_EXAMPLES))
def test_every_help_example_works_as_written_from_an_empty_folder(sub, tmp_path):
    """The example each `--help` ends with, run exactly as printed (through a shell, as a
    user pastes it) in an empty folder: exit 0 and the files it names exist."""
    command = HELP_EXAMPLES[sub]
    proc = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, MPLBACKEND="Agg"))
    assert proc.returncode == 0, (command, proc.stderr[-2000:])
    for word in shlex.split(command):
        if word.endswith((".csv", ".png", ".xml")) or word.endswith("_run"):
            assert (tmp_path / word).exists(), word


def test_placeholders_in_help_are_shown_as_placeholders():
    from mechsim.cli import YOUR_OWN
    for sub, text in YOUR_OWN.items():
        assert "PATH/TO/" in text and text.startswith(f"mechsim {sub} ")
        proc = run(sub, "--help")
        assert "the capitals are placeholders" in proc.stdout and text in proc.stdout


def test_run_a_builtin_scenario_by_name_from_an_empty_folder(tmp_path):
    proc = run("run", "iscalimab_q4w", "--out", "r", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r" / "metrics.csv").is_file()
    provenance = json.loads((tmp_path / "r" / "provenance.json").read_text())
    assert provenance["files"]["scenario"]["path"].endswith("iscalimab_q4w.toml")


def test_ctrl_c_during_a_run_exits_130_and_leaves_nothing(tmp_path):
    # the run takes about 40 s; the interrupt arrives while it simulates the trial, after
    # the first seconds in which numba compiles the model (an interrupt that lands inside
    # llvmlite's compile callbacks is swallowed there, outside mechsim's reach)
    # (a shell running the tests in the background ignores SIGINT, and children inherit
    # that: the child restores Python's own handler, as at a terminal)
    start = ("import runpy, signal, sys; signal.signal(signal.SIGINT, "
             "signal.default_int_handler); sys.argv = ['mechsim', 'run', 'icaria_mm', "
             "'--trial-size', '3000', '--out', 'r']; runpy.run_module('mechsim', "
             "run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", start], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, MPLBACKEND="Agg"))
    time.sleep(15)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err == "mechsim: interrupted; no partial output was left\n"
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_the_folder_is_assembled_removes_it(tmp_path, monkeypatch):
    from mechsim import plotting, scenario

    def interrupted(fig, path):
        assert Path(path).parent.name.startswith(".r.mechsim-partial-")
        raise KeyboardInterrupt

    monkeypatch.setattr(plotting, "save_figure", interrupted)
    with pytest.raises(KeyboardInterrupt):
        scenario.run_scenario("iscalimab_q4w", tmp_path / "r")
    assert list(tmp_path.iterdir()) == []


def test_a_killed_run_leaves_a_recognisable_folder_that_the_next_run_removes(tmp_path):
    from mechsim.io.atomic import _partial_name
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(gone.stdout)
    stale = tmp_path / _partial_name("r").replace(f"-{os.getpid()}-", f"-{dead_pid}-")
    stale.mkdir()
    (stale / "metrics.csv").write_text("half")
    stale_file = tmp_path / _partial_name("x", ".csv").replace(f"-{os.getpid()}-",
                                                                f"-{dead_pid}-")
    stale_file.write_text("half")
    alive = tmp_path / _partial_name("mine")  # this process is running: kept
    alive.mkdir()
    lookalike = tmp_path / ".r.partial-notours"  # not mechsim's pattern: kept
    lookalike.mkdir()
    proc = run("run", "iscalimab_q4w", "--out", "r2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [alive.name, lookalike.name, "r2"])


@pytest.mark.parametrize("model, expect", [
    ("cd38_myeloma", ["kint", "daratumumab proxy", "V1*C + V2*Cp + V_bm*C_bm + V_bm*RC + drug_cleared"]),
    ("cd40_apc", ["KD_D", "Espie et al. 2020", "depot + V1*D + V2*Dp + V1*DR"]),
])
def test_show_flagship_models(capsys, model, expect):
    assert main(["show", model]) == 0
    out = capsys.readouterr().out
    for text in expect:
        assert text in out


def test_check_clean_and_failing_models(capsys, tmp_path):
    assert main(["check", "cd40_apc"]) == 0
    assert "mass-balance residual" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[species.x]\nunit = "nM"\n[reactions.r]\nequation = "x ->"\n'
                   'rate = "x"\n')
    assert main(["check", str(bad)]) == 1
    assert "FAIL load and unit check" in capsys.readouterr().out


def test_simulate_prints_table_with_units(capsys):
    assert main(["simulate", "one_compartment", "--regimen", "100 mg iv", "--until", "2 day",
                 "--every", "1 day", "--output", "C_mass"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "time [d]\tC_mass [mg/L]"
    assert [float(x.split("\t")[1]) for x in lines[1:]] == pytest.approx([10, 5, 2.5], rel=1e-6)


@pytest.mark.parametrize("model, regimen, outputs", [
    ("cd38_myeloma", ISA, "C_mass,RO,N,M,NK"),
    ("cd40_apc", "10 mg/kg iv every 4 weeks x 2", "C_mass,RO,IL6,IL6_rel,Ab"),
])
def test_simulate_flagships_writes_csv_json_and_plot(tmp_path, capsys, model, regimen, outputs):
    csv_path, json_path, png = tmp_path / "a.csv", tmp_path / "a.json", tmp_path / "a.png"
    assert main(["simulate", model, "--regimen", regimen, "--until", "8 weeks", "--every",
                 "1 day", "--output", outputs, "--out", str(csv_path), "--plot", str(png)]) == 0
    assert main(["simulate", model, "--regimen", regimen, "--until", "8 weeks", "--every",
                 "1 day", "--output", outputs, "--out", str(json_path)]) == 0
    with csv_path.open() as fh:
        header = next(csv.reader(fh))
    assert header[0] == "time [d]" and all("[" in h for h in header)
    table = np.genfromtxt(csv_path, delimiter=",", skip_header=1)
    assert table.shape == (57, 1 + len(outputs.split(",")))
    record = json.loads(json_path.read_text())
    np.testing.assert_allclose(record["outputs"]["RO"]["values"], table[:, 2])
    assert png.stat().st_size > 10_000
    import pandas as pd
    frame = pd.read_csv(csv_path)
    assert list(frame.columns) == header


@pytest.mark.parametrize("model, regimen, doses, metric, background", [
    ("cd38_myeloma", "{dose} iv every 14 days", "0.01..30 mg/kg", "value(M, 24 weeks)",
     "4 mg oral on days 1-21 of 28-day cycles"),
    ("cd40_apc", "{dose} iv every 4 weeks x 3", "0.01..10 mg/kg", "mean(IL6, 0 day, 12 weeks)",
     None),
])
def test_dose_response_flagships_fit_an_ed50(tmp_path, capsys, model, regimen, doses, metric,
                                              background):
    table, png = tmp_path / "dr.csv", tmp_path / "dr.png"
    args = ["dose-response", model, "--regimen", regimen, "--doses", doses, "--n", "8",
            "--metric", metric, "--until", "24 weeks", "--every", "1 day", "--out", str(table),
            "--plot", str(png)] + (["--background", background] if background else [])
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "ED50 = " in out and "mg/kg" in out and "sigmoid Emax curve" in out
    with table.open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["metric", "dose [mg/kg]", "value", "fitted", "unit"]
    assert len(rows) == 10 and {r[0] for r in rows[1:]} == {metric.replace("day", "d")
                                                             .replace("weeks", "week")}
    doses, values = [float(r[1]) for r in rows[1:]], [float(r[2]) for r in rows[1:]]
    assert doses[0] == 0 and values[-1] < values[0]  # the drug lowers the response
    assert png.stat().st_size > 10_000


BELL_MODEL = """
[parameters]
V = "1 L"
k = "0.1 1/day"
K = "10 nM"
[compartments]
plasma = "V"
[species.C]
compartment = "plasma"
unit = "nM"
[reactions.elimination]
equation = "C ->"
rate = "k*C"
[rules]
E = { expr = "4*K*C/(K + C)**2", unit = "1" }
[routes.iv]
target = "C"
"""


def test_dose_response_several_metrics_write_one_table_and_one_figure(tmp_path, capsys):
    args = ["dose-response", "one_compartment", "--regimen", "{dose} iv", "--doses",
            "10..1000 nmol", "--n", "6", "--until", "1 day", "--metric", "max(C)",
            "--metric", "auc(C, 0 day, 1 day)", "--out", "dr.csv", "--plot", "dr.png"]
    assert _main_in(tmp_path, args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dr.csv", "dr.png"]
    out = capsys.readouterr().out
    # both are proportional to the dose: a straight line each
    assert out.count("linear curve (smallest AICc)") == 2
    with (tmp_path / "dr.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["metric", "dose [nmol]", "value", "fitted", "unit"]
    assert [r[0] for r in rows[1:]] == ["max(C)"] * 7 + ["auc(C, 0 d, 1 d)"] * 7
    assert [r[4] for r in rows[1:]] == ["nM"] * 7 + ["d*nM"] * 7
    # max(C) = D/V with V = 10 L, and the straight line goes through it
    np.testing.assert_allclose([float(r[2]) for r in rows[1:8]],
                               [float(r[1]) / 10 for r in rows[1:8]], rtol=1e-9)
    np.testing.assert_allclose([float(r[3]) for r in rows[1:8]],
                               [float(r[2]) for r in rows[1:8]], rtol=1e-6, atol=1e-9)


def test_dose_response_says_when_no_curve_fits_and_exits_0(tmp_path, capsys):
    # E = 4KC/(K+C)^2 is 1 at C = K and falls on both sides: no monotonic curve fits; the
    # doses are 0.1 nmol x 10^(k/3), so one gives C = K = 10 nM (V = 1 L) exactly
    (tmp_path / "bell.toml").write_text(BELL_MODEL)
    args = ["dose-response", "bell.toml", "--regimen", "{dose} iv", "--doses", "0.1..1000 nmol",
            "--n", "13", "--until", "1 day", "--metric", "value(E, 0 day)", "--out", "e.csv",
            "--plot", "e.png"]
    assert _main_in(tmp_path, args) == 0
    out = capsys.readouterr().out
    assert "value(E, 0 d): no curve fits this response: linear misses a point by" in out
    assert "warning: the response is not monotonic in dose (it turns at 10 nmol)" in out
    assert "did not converge" not in out.replace("rejected: did not converge", "")
    with (tmp_path / "e.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == 15 and {r[3] for r in rows[1:]} == {""}  # no fitted values
    assert (tmp_path / "e.png").stat().st_size > 10_000


@pytest.mark.parametrize("scenario", ["icaria_mm.toml", "iscalimab_q4w.toml"])
def test_run_shipped_scenarios(tmp_path, capsys, scenario):
    out = tmp_path / "run"
    # the ICARIA trial with 20 patients per arm here; the full trial is in test_icaria_trial
    assert main(["run", os.path.join(EXAMPLES, scenario), "--out", str(out),
                 "--trial-size", "20"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert {"metrics.csv", "provenance.json", "timecourse.png", "dose_response.png",
            "dose_response.csv"} <= set(names)
    # the sweep's fit is printed as mechsim dose-response prints it, warnings included
    printed = capsys.readouterr().out
    sweep = printed.split("dose-response sweep:\n", 1)[1]
    assert " curve (smallest AICc)" in sweep or "no curve fits" in sweep
    assert "AICc:" in sweep
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["files"]["model"]["sha256"] and provenance["scenario_text"]
    assert provenance["command"][:2] == ["mechsim", "run"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    if scenario == "icaria_mm.toml":
        assert {"trial_patients.csv", "trial_summary.csv", "km.png"} <= set(names)
        assert provenance["trial"]["arm_sizes"] == {"isa_pd": 20, "pd": 20}
        assert provenance["files"]["population"]["sha256"]


BAD = [
    (["simulate", "one_compartment", "--regimen", "10 mL iv", "--until", "1 day"],
     "dose amount must be a mass"),
    (["simulate", "nope", "--until", "1 day"], "unknown built-in model 'nope'"),
    (["simulate", "one_compartment", "--until", "1 mg"], "`until` must be a time"),
    (["simulate", "one_compartment", "--until", "soon"], "cannot read 'soon'"),
    (["simulate", "one_compartment", "--until", "1 day", "--set", "CL"], "NAME=QUANTITY"),
    (["simulate", "one_compartment", "--until", "1 day", "--set", "CLX=1 L/day"],
     "unknown parameter 'CLX'"),
    (["simulate", "one_compartment", "--until", "1 day", "--output", "nope"],
     "no output named 'nope'"),
    (["simulate", "one_compartment", "--until", "1 day", "--regimen", "100 mg iv every"],
     "regimen"),
    (["simulate", "one_compartment", "--until", "1 day", "--bogus"], "unrecognized arguments"),
    (["simulate", "one_compartment", "--until", "1 day", "--params", "missing.toml"],
     "no such file"),
    (["dose-response", "one_compartment", "--regimen", "100 mg iv", "--doses",
      "1..10 mg", "--metric", "max(C)", "--until", "1 day"], "must contain {dose}"),
    (["dose-response", "one_compartment", "--regimen", "{dose} iv", "--doses", "10..1 mg",
      "--metric", "max(C)", "--until", "1 day"], "need 0 < LOW < HIGH"),
    (["dose-response", "one_compartment", "--regimen", "{dose} iv", "--doses", "1..10 mg",
      "--metric", "peak(C)", "--until", "1 day"], "unknown metric 'peak'"),
    (["dose-response", "one_compartment", "--regimen", "{dose} iv", "--doses", "1..10 mg",
      "--metric", "max(C)", "--until", "1 day", "--model", "foo"],
     "argument --model: invalid choice: 'foo'"),
    (["run", "missing.toml"], "no such file"),
    (["frobnicate"], "invalid choice"),
]


def _main_in(folder, args):
    """main() as the console script runs it: exit status from return or SystemExit."""
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return main(args)
    except SystemExit as exc:  # argparse usage errors
        return exc.code
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a[:2]) + f" {i}"
                                                    for i, (a, _) in enumerate(BAD)])
def test_bad_input_is_one_line_on_stderr_with_status_2(tmp_path, capsys, args, message):
    extra = ["--out", str(tmp_path / "never.csv"), "--plot", str(tmp_path / "never.png")] \
        if args[0] in ("simulate", "dose-response") else []
    assert _main_in(tmp_path, [*args, *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("args", [BAD[0][0], BAD[8][0], ["run", "missing.toml"]])
def test_bad_input_through_the_real_console_process(tmp_path, args):
    proc = run(*args, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr and not list(tmp_path.iterdir())


def test_existing_run_folder_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = run("run", os.path.join(EXAMPLES, "iscalimab_q4w.toml"), "--out", str(out))
    assert proc.returncode == 2 and "already exists" in proc.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_bad_scenario_file_names_its_line(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[scenario]\nmodel = "cd40_apc"\nuntil = "1 week"\noutputs = ["RO"]\n'
                    '[arms.a]\nregimen = "10 mL iv"\n')
    proc = run("run", str(path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert f"{path}:6: arms.a: regimen '10 mL iv'" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_public_names_all_resolve():
    import mechsim
    assert set(mechsim.__all__) - {"__version__"} == set(mechsim._EXPORTS)
    for name in mechsim.__all__:
        assert getattr(mechsim, name) is not None


def test_lazy_exports_survive_submodule_imports():
    import importlib

    import mechsim
    for module in ("simulation", "analysis.dose_response", "analysis.metrics", "io"):
        importlib.import_module(f"mechsim.{module}")
    assert callable(mechsim.simulate) and callable(mechsim.dose_response)
    assert callable(mechsim.load_model)


def test_export_sbml_and_load_it_back(tmp_path, capsys):
    out = tmp_path / "cd38.xml"
    assert main(["export", "cd38_myeloma", "--format", "sbml", "--regimen", ISA, "--until",
                 "4 weeks", "-o", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    count = re.fullmatch(r"libsbml consistency check: 0 errors, (\d+) warnings", lines[1])
    # every warning listed, one line each, naming the element it concerns
    listed = [line for line in lines[2:] if line.startswith("  warning ")]
    assert count and len(listed) == int(count.group(1)) == len(lines) - 2 > 0
    reactions = {r.split("'")[1] for r in listed if ", reaction '" in r}
    assert {"tumour_growth", "tumour_kill"} <= reactions
    assert all("<kineticLaw>" in r for r in listed if ", reaction '" in r)
    plain = tmp_path / "cd40.xml"
    assert main(["export", "cd40_apc", "-o", str(plain)]) == 0
    assert main(["show", str(plain)]) == 0
    assert "depot + V1*D + V2*Dp + V1*DR" in capsys.readouterr().out
    assert _main_in(tmp_path, ["export", "cd40_apc", "-o", "x.txt"]) == 2
    assert "must end in .xml or .sbml" in capsys.readouterr().err


def test_sensitivity_local_and_sobol(tmp_path, capsys):
    args = ["sensitivity", "one_compartment", "--regimen", "1000 nmol iv", "--until", "40 day",
            "--metric", "max(C)"]
    assert main([*args, "--parameters", "V,CL", "--out", str(tmp_path / "s.csv")]) == 0
    out = capsys.readouterr().out
    assert "V" in out and "-1.0000" in out
    assert main([*args, "--method", "sobol", "--vary", "V,CL", "--n", "8",
                 "--plot", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 10_000
    assert _main_in(tmp_path, [*args, "--method", "sobol"]) == 2
    assert "--vary" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["--help"], ["list"], ["--version"]])
def test_help_and_list_start_without_the_heavy_libraries(command):
    """`mechsim --help` and `mechsim list` answer before numpy, pint, sympy, scipy, numba or
    matplotlib are imported (they cost about 1.5 s together): start-up is a matter of what
    is imported, checked here without timing anything."""
    code = ("import sys\nfrom mechsim.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "heavy = ('numpy', 'pint', 'sympy', 'scipy', 'numba', 'matplotlib')\n"
            "print('HEAVY', sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, *command], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "HEAVY []"
    if command == ["list"]:
        assert "cd38_myeloma" in out.stdout and "icaria_mm" in out.stdout
