"""`mechsim nca` as a user meets it: a simulated profile, observed data (a rich dataset
written here with closed-form concentrations, and the sparse built-in pheno), tables with
units, and bad input as one line with exit status 2 and no file."""

import csv
import math
import os
import subprocess
import sys

import pytest

from mechsim.cli import main
from mechsim.io.common import resolve

V, K = 10.0, 0.1                 # L, 1/h: CL = 1 L/h
CL = V * K


def _main_in(folder, args):
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return main(args)
    except SystemExit as exc:    # argparse usage errors
        return exc.code
    finally:
        os.chdir(cwd)


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _bolus_dataset(path, doses, times, with_trough=True):
    """IV bolus doses (ID 1: `doses` as (time, mg)) observed at `times`; at a dose time the
    observation row comes first (a trough, before the dose)."""
    lines = ["ID,TIME,AMT,DV"]
    events = [(t, 0, a) for t, a in doses] + [(t, 1, None) for t in times]
    for t, kind, amount in sorted(events, key=lambda e: (e[0], -e[1])):
        if kind == 0:
            lines.append(f"1,{t},{amount},.")
        else:
            c = sum(a / V * math.exp(-K * (t - s)) for s, a in doses
                    if s < t or (s == t and not with_trough))
            lines.append(f"1,{t},0,{c!r}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_simulated_profile_prints_and_writes_the_model_clearance(tmp_path, capsys):
    out = tmp_path / "nca.csv"
    assert _main_in(tmp_path, ["nca", "one_compartment", "--regimen", "100 mg iv", "--until",
                               "12 day", "--output", "C_mass", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "NCA of C_mass [mg/L], one_compartment: 100 mg iv" in text
    assert "CL " in text and "L/d" in text
    (row,) = _rows(out)
    # one_compartment: CL = 10 ln 2 L/day, V = 10 L, half-life exactly 1 day
    assert float(row["CL [L/d]"]) == pytest.approx(10 * math.log(2), rel=1e-6)
    assert float(row["Vz [L]"]) == pytest.approx(10.0, rel=1e-6)
    assert float(row["half_life [d]"]) == pytest.approx(1.0, rel=1e-6)


def test_simulated_intervals_with_a_coarse_grid_that_misses_the_doses(tmp_path, capsys):
    """--every 5 h against doses every 12 h: the dose times are added to the grid, so each
    bolus is sampled just after it and the AUCtau are exact (log-down on an exponential)."""
    out = tmp_path / "iv.csv"
    assert _main_in(tmp_path, ["nca", "one_compartment", "--regimen", "100 mg iv every 12 h x 4",
                               "--until", "5 day", "--every", "5 h", "--output", "C_mass",
                               "--intervals", "--out", str(out)]) == 0
    assert "dosing intervals" in capsys.readouterr().out
    rows = _rows(out)
    k, tau = math.log(2), 0.5                               # 1/day, day
    for n, row in enumerate(rows):
        assert row["dose_number"] == str(n + 1)
        expected = 100 / (10 * k) * (1 - math.exp(-k * tau * (n + 1)))
        assert float(row["AUCtau [d*mg/L]"]) == pytest.approx(expected, rel=1e-6)


def test_observed_rich_data_recover_clearance_and_volume(tmp_path, capsys):
    times = [0.5, 1, 2, 4, 8, 12, 24, 36, 48]
    data = _bolus_dataset(tmp_path / "rich.csv", [(0, 100.0)], times)
    out = tmp_path / "subjects.csv"
    assert _main_in(tmp_path, ["nca", "--data", str(data), "--units", "TIME=h,AMT=mg,DV=mg/L",
                               "--route", "iv", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "1 subjects" in text and "AUCinf for 1" in text
    (row,) = _rows(out)
    # C0 back-extrapolated and log-down areas are exact on an exponential
    assert float(row["CL [L/h]"]) == pytest.approx(CL, rel=1e-9)
    assert float(row["Vz [L]"]) == pytest.approx(V, rel=1e-9)
    assert float(row["C0 [mg/L]"]) == pytest.approx(100 / V, rel=1e-9)
    assert float(row["Tlast [h]"]) == 48 and row["ID"] == "1"


def test_observed_multiple_doses_by_interval_with_trough_rows(tmp_path, capsys):
    times = [0.5, 1, 2, 4, 8, 12, 12.5, 13, 14, 16, 20, 24, 36]
    data = _bolus_dataset(tmp_path / "md.csv", [(0, 100.0), (12, 100.0)], times)
    out = tmp_path / "intervals.csv"
    assert _main_in(tmp_path, ["nca", "--data", str(data), "--units", "TIME=h,AMT=mg,DV=mg/L",
                               "--route", "iv", "--intervals", "--out", str(out)]) == 0
    first, second = _rows(out)
    assert float(first["AUCtau [h*mg/L]"]) == pytest.approx(100 / CL * (1 - math.exp(-1.2)),
                                                            rel=1e-9)
    # the trough at 12 h was recorded before the dose: it ends interval 1
    assert float(first["Ctrough [mg/L]"]) == pytest.approx(10 * math.exp(-1.2), rel=1e-12)
    # interval 2 runs a full tau (to 24 h, sampled): superposition of two doses
    assert float(second["AUCtau [h*mg/L]"]) == pytest.approx(
        100 / CL * (1 - math.exp(-2.4)), rel=1e-9)
    assert second["to_end"] == "no" and float(second["tau [h]"]) == 12


def test_sparse_pheno_reports_only_what_it_can(tmp_path, capsys):
    out = tmp_path / "pheno_nca.csv"
    assert _main_in(tmp_path, ["nca", "--data", "pheno", "--units", "TIME=h,AMT=mg,DV=mg/L",
                               "--route", "iv", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "AUClast and Cmax for 0 of 59 profiles" in text
    assert "only Clast and Tlast are reported" in text
    rows = _rows(out)
    # the oracle: the last measured concentration of each infant, from the file itself
    last = {}
    with open(resolve("pheno", "data"), newline="") as fh:
        for r in csv.DictReader(fh):
            if float(r["AMT"]) == 0:
                last[r["ID"]] = (float(r["TIME"]), float(r["DV"]))
    assert len(rows) == len(last) == 59
    for row in rows:
        t, dv = last[row["ID"]]
        assert float(row["Clast [mg/L]"]) == dv
        # each infant's first dose is at 0 h, so Tlast is the sample's own time
        assert float(row["Tlast [h]"]) == t
        assert math.isnan(float(row["AUClast [h*mg/L]"])) and row["note"]


BAD = [
    (["nca", "one_compartment", "--regimen", "100 mg iv", "--until", "1 day", "--output",
      "nope"], "no output named 'nope'"),
    (["nca", "one_compartment", "--regimen", "100 mg iv", "--until", "1 day", "--output",
      "eliminated"], "eliminated is in nmol, not a concentration"),
    (["nca", "one_compartment", "--regimen", "100 mg iv", "--output", "C"], "give --until"),
    (["nca", "one_compartment", "--until", "1 day", "--output", "C", "--units", "DV=mg/L"],
     "--units is for observed data"),
    (["nca", "--data", "NODV", "--units", "TIME=h,AMT=mg", "--route", "iv"],
     "no observations (no DV values)"),
    (["nca", "--data", "MASSDV", "--units", "TIME=h,AMT=mg,DV=mg", "--route", "iv"],
     "DV is in mg, not a concentration"),
    (["nca", "--data", "pheno", "--units", "TIME=h,AMT=mg,DV=mg/L"], "no model route"),
    (["nca", "--data", "pheno", "--units", "TIME=h,AMT=mg,DV=mg/L", "--route", "iv",
      "--regimen", "1 mg iv"], "--regimen is for a simulation"),
    (["nca", "one_compartment", "--data", "pheno"], "not both"),
    (["nca"], "give a MODEL to simulate"),
    (["nca", "one_compartment", "--regimen", "100 mg iv", "--until", "1 day", "--output", "C",
      "--every", "-1 h"], "--every must be positive"),
]


def _files(tmp_path):
    (tmp_path / "NODV").write_text("ID,TIME,AMT\n1,0,100\n1,12,100\n")
    (tmp_path / "MASSDV").write_text("ID,TIME,AMT,DV\n1,0,100,.\n1,1,0,5\n")
    return {"NODV", "MASSDV"}


@pytest.mark.parametrize("args, message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_input_is_one_line_with_status_2_and_no_file(tmp_path, capsys, args, message):
    inputs = _files(tmp_path)
    args = [str(tmp_path / a) if a in inputs else a for a in args]
    assert _main_in(tmp_path, [*args, "--out", str(tmp_path / "never.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert {p.name for p in tmp_path.iterdir()} == inputs


def test_bad_input_through_the_console_process_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mechsim", "nca", "one_compartment",
                           "--regimen", "100 mg iv", "--until", "1 day", "--output",
                           "eliminated", "--out", "x.csv"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr and not list(tmp_path.iterdir())


def test_wrong_out_suffix_is_refused_before_any_work(tmp_path, capsys):
    assert _main_in(tmp_path, ["nca", "--data", "pheno", "--out", "t.txt"]) == 2
    assert "--out must end in .csv" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_nca_of_an_output_in_the_unit_asked_for(capsys):
    from mechsim.cli import main

    assert main(["nca", "one_compartment", "--regimen", "100 mg iv", "--until", "5 day",
                 "--every", "2 h", "--output", "C_mass[ng/mL]"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("NCA of C_mass [ng/mL]")
    cmax = next(line for line in out.splitlines() if line.split()[:1] == ["Cmax"])
    # 100 mg into V = 10 L: 10 mg/L, 10,000 ng/mL at the bolus
    assert cmax.split()[1:] == ["1e+04", "ng/mL"]
    assert main(["nca", "one_compartment", "--regimen", "100 mg iv", "--until", "5 day",
                 "--output", "C_mass[nmol]"]) == 2
    assert "output C_mass is in mg/L" in capsys.readouterr().err
