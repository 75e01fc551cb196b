"""The command line as a user meets it: exit codes, one-line errors, no partial files."""

import subprocess
import sys

import pytest

from mechsim.cli import main


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mechsim", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def test_version_help_and_list_from_another_directory(tmp_path):
    version = run("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("mechsim ")
    helptext = run("--help", cwd=tmp_path)
    assert helptext.returncode == 0 and "example: mechsim simulate" in helptext.stdout
    listing = run("list", cwd=tmp_path)
    assert listing.returncode == 0
    assert "one_compartment" in listing.stdout and "parameter sets:" in listing.stdout


def test_simulate_prints_table_with_units(capsys):
    assert main(["simulate", "one_compartment", "--regimen", "100 mg iv", "--until", "2 day",
                 "--every", "1 day", "--output", "C_mass"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "time [d]\tC_mass [mg/L]"
    assert [float(x.split("\t")[1]) for x in lines[1:]] == pytest.approx([10, 5, 2.5], rel=1e-6)


def test_simulate_writes_csv(tmp_path, capsys):
    out = tmp_path / "c.csv"
    assert main(["simulate", "one_compartment", "--regimen", "100 mg iv", "--until", "1 day",
                 "--every", "1 day", "--set", "V=20 L", "--out", str(out)]) == 0
    rows = out.read_text().splitlines()
    assert rows[0] == "time [d],C [nM],depot [nmol],eliminated [nmol],C_mass [mg/L]"
    assert float(rows[1].split(",")[4]) == pytest.approx(5.0)


@pytest.mark.parametrize("args, message", [
    (["simulate", "one_compartment", "--regimen", "10 mL iv", "--until", "1 day"],
     "dose amount must be a mass"),
    (["simulate", "nope", "--until", "1 day"], "unknown built-in model 'nope'"),
    (["simulate", "one_compartment", "--until", "1 mg"], "`until` must be a time"),
    (["simulate", "one_compartment", "--until", "1 day", "--set", "CL"], "NAME=QUANTITY"),
    (["simulate", "one_compartment", "--until", "1 day", "--set", "CLX=1 L/day"],
     "unknown parameter 'CLX'"),
    (["simulate", "one_compartment", "--until", "1 day", "--output", "nope"],
     "no output named 'nope'"),
])
def test_bad_input_is_one_line_on_stderr_with_status_2(tmp_path, args, message):
    out = tmp_path / "never.csv"
    proc = run(*args, "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not list(tmp_path.iterdir())
