"""Expectations ([[expect]]) tested by mechsim check: each comparison against the
one-compartment model's closed form, counterexamples, known violations, determinism, the
command line and a user's own model file."""

import math
from pathlib import Path

import pytest

import mechsim
from mechsim.behaviour import check_expectation
from mechsim.cli import main

ONE = (Path(__file__).resolve().parent.parent / "models" / "one_compartment.toml").read_text()
V, CL = 10.0, 6.931471805599453  # L and L/day in the shipped file: k = ln 2 per day


def model_with(tmp_path, *entries: str):
    path = tmp_path / "mine.toml"
    path.write_text(ONE + "".join(f"\n[[expect]]\n{e.strip()}\n" for e in entries))
    return path


def verdict(tmp_path, entry: str, examples: int = 8):
    model = mechsim.load_model(model_with(tmp_path, entry))
    return check_expectation(model, model.expectations[0], examples=examples)


def test_each_comparison_holds_where_the_closed_form_says_so(tmp_path):
    held = [
        # C(t) = D/V exp(-CL t / V): falls with CL, rises with the dose, ka plays no part
        'name = "a"\nvary = "CL"\nover = ["1 L/day", "20 L/day"]\nregimen = "100 mg iv"\n'
        'output = "C"\nat = ["1 day", "3 day"]\neffect = "decreases"',
        'name = "b"\nvary = "dose"\nover = ["0 mg", "500 mg"]\nregimen = "DOSE iv"\n'
        'output = ["C", "C_mass"]\nat = "2 day"\neffect = "increases"',
        'name = "c"\nvary = "ka"\nover = ["0.1 1/day", "10 1/day"]\nregimen = "100 mg iv"\n'
        'output = "C"\nat = "1 day"\neffect = "unchanged"\ntolerance = 1e-9',
        'name = "d"\nvary = "V"\nover = ["1 L", "50 L"]\nregimen = "100 mg iv"\n'
        'output = "eliminated"\nat = "1 day"\neffect = "never_increases"',
        # drug in the body plus the eliminated amount is the dose, whatever the clearance
        'name = "e"\noutput = "V*C + depot + eliminated"\nat = ["1 day", "9 day"]\n'
        'regimen = "100 mg iv; 50 mg oral"\n'
        'given = { CL = ["1 L/day", "20 L/day"], ka = ["0.1 1/day", "10 1/day"] }\n'
        'effect = "conserved"',
        # after one bolus C exp(k t) is constant: an output may use t and parameters
        'name = "f"\noutput = "C*exp(CL*t/V)"\nat = ["1 day", "5 day"]\nregimen = "100 mg iv"\n'
        'given = { CL = ["1 L/day", "20 L/day"] }\neffect = "conserved"',
        # bounds: C after 100 mg stays below the peak D/V whatever CL, and above 0
        'name = "w"\nvary = "CL"\nover = ["1 L/day", "20 L/day"]\nregimen = "100 mg iv"\n'
        'output = "C_mass"\nat = ["0.5 day", "3 day"]\nbetween = ["0 mg/L", "10 mg/L"]\n'
        'effect = "within"',
        # a later second dose never lowers the concentration at 3 days
        'name = "g"\nvary = "regimen"\nregimens = ["100 mg iv", "100 mg iv; 10 mg iv at 1 day", '
        '"100 mg iv; 100 mg iv at 1 day"]\noutput = "C"\nat = "3 day"\neffect = "increases"',
    ]
    for entry in held:
        v = verdict(tmp_path, entry)
        assert v.held and v.ok, (entry, v)
        assert v.examples >= 2


def test_each_comparison_is_falsified_where_the_closed_form_says_so(tmp_path):
    falsified = [
        'name = "a"\nvary = "CL"\nover = ["1 L/day", "20 L/day"]\nregimen = "100 mg iv"\n'
        'output = "C"\nat = "1 day"\neffect = "increases"',
        'name = "b"\nvary = "CL"\nover = ["1 L/day", "20 L/day"]\nregimen = "100 mg iv"\n'
        'output = "C"\nat = "1 day"\neffect = "never_decreases"',
        'name = "c"\nvary = "CL"\nover = ["1 L/day", "20 L/day"]\nregimen = "100 mg iv"\n'
        'output = "C"\nat = "1 day"\neffect = "unchanged"',
        'name = "d"\noutput = "C"\nat = "1 day"\nregimen = "100 mg iv"\neffect = "conserved"',
        # 100 mg in 10 L is 10 mg/L at first: above a bound of 9 mg/L for fast-enough times
        'name = "w"\nvary = "CL"\nover = ["1 L/day", "20 L/day"]\nregimen = "100 mg iv"\n'
        'output = "C_mass"\nat = "0.01 day"\nbetween = ["0 mg/L", "9 mg/L"]\n'
        'effect = "within"',
        # a wide upper bound does not loosen the lower one: C falls below 1 nM by 3 days
        'name = "w2"\nvary = "CL"\nover = ["1 L/day", "20 L/day"]\nregimen = "100 mg iv"\n'
        'output = "C"\nat = "3 day"\nbetween = ["1 nM", "1000000 nM"]\neffect = "within"',
        # ka does not change an IV profile at all: a strict change is falsified
        'name = "e"\nvary = "ka"\nover = ["0.1 1/day", "10 1/day"]\nregimen = "100 mg iv"\n'
        'output = "C"\nat = "1 day"\neffect = "decreases"',
    ]
    for entry in falsified:
        v = verdict(tmp_path, entry)
        assert not v.held and not v.ok, entry
        assert "FAIL" in str(v) and "FALSIFIED" in str(v)


def test_a_counterexample_shows_the_inputs_and_the_two_values_compared(tmp_path):
    v = verdict(tmp_path, 'name = "wrong on purpose"\nvary = "dose"\nover = ["0 mg", "100 mg"]\n'
                          'regimen = "DOSE iv"\noutput = "C_mass"\nat = "1 day"\n'
                          'effect = "decreases"')
    assert not v.held and v.shrunk
    first, second, expected = v.counterexample
    # shrunk to the smallest dose pair: no drug, and the least dose the 2 % gap allows
    assert first == "dose 0 mg:  C_mass at 1 d = 0 mg/L"
    assert second.startswith("dose 2 mg:  C_mass at 1 d = ")
    closed_form = 2.0 / V * math.exp(-CL / V)  # mg/L after 2 mg
    assert float(second.split("= ")[1].split()[0]) == pytest.approx(closed_form, rel=1e-5)
    assert expected == "expected C_mass to fall (by more than 1e-06 relative)"


def test_the_search_is_deterministic(tmp_path):
    entry = ('name = "x"\nvary = "CL"\nover = ["1 L/day", "20 L/day"]\nregimen = "100 mg iv"\n'
             'output = "C"\nat = "1 day"\ngiven = { V = ["5 L", "20 L"] }\neffect = "increases"')
    assert str(verdict(tmp_path, entry)) == str(verdict(tmp_path, entry))


def test_a_declared_violation_is_reported_and_does_not_fail_the_check(tmp_path):
    v = verdict(tmp_path, 'name = "x"\nvary = "CL"\nover = ["1 L/day", "20 L/day"]\n'
                          'regimen = "100 mg iv"\noutput = "C"\nat = "1 day"\n'
                          'effect = "increases"\nviolated = "it falls, on purpose"')
    assert not v.held and v.ok and v.status == "known violation"
    assert "declared: it falls, on purpose" in str(v)


def test_a_run_the_solver_cannot_finish_falsifies_with_its_message(tmp_path):
    # elimination turned into a production quadratic in C blows up in finite time
    text = ONE.replace('rate = "CL*C"', 'rate = "-CL*C*C/c1"').replace(
        "[compartments]", 'c1 = "1 nM"\n\n[compartments]') + (
        '\n[[expect]]\nname = "stays finite"\nvary = "dose"\nover = ["1000 mg", "5000 mg"]\n'
        'regimen = "DOSE iv"\noutput = "C"\nat = "30 day"\neffect = "increases"\n')
    path = tmp_path / "blow.toml"
    path.write_text(text)
    model = mechsim.load_model(path)
    v = check_expectation(model, model.expectations[0])
    assert not v.held and "could not be simulated" in v.counterexample[-1]


def test_check_model_returns_a_frozen_report_with_one_verdict_each(tmp_path):
    path = model_with(tmp_path,
                      'name = "holds"\nvary = "CL"\nover = ["1 L/day", "20 L/day"]\n'
                      'regimen = "100 mg iv"\noutput = "C"\nat = "1 day"\neffect = "decreases"',
                      'name = "fails"\nvary = "CL"\nover = ["1 L/day", "20 L/day"]\n'
                      'regimen = "100 mg iv"\noutput = "C"\nat = "1 day"\neffect = "increases"')
    report = mechsim.check_model(path)
    assert [v.expectation.name for v in report.expectations] == ["holds", "fails"]
    assert not report.ok and [v.expectation.name for v in report.falsified] == ["fails"]
    with pytest.raises(AttributeError):
        report.expectations = ()
    thorough = mechsim.check_model(path, thorough=True)
    assert thorough.expectations[0].examples > report.expectations[0].examples


def test_the_command_line_prints_one_readable_block_and_exits_1(tmp_path, capsys):
    path = model_with(tmp_path, 'name = "a bigger dose gives less drug"\nvary = "dose"\n'
                                'over = ["0 mg", "100 mg"]\nregimen = "DOSE iv every 1 day x 3"\n'
                                'output = "C_mass"\nat = "3 day"\neffect = "decreases"')
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    head = next(i for i, line in enumerate(out) if "a bigger dose" in line)
    assert out[head].startswith("FAIL expect 'a bigger dose gives less drug' (")
    assert "mine.toml:" in out[head] and "FALSIFIED" in out[head]
    assert out[head + 1].strip() == "smallest counterexample found:"
    assert out[head + 2].strip().startswith("dose 0 mg:  C_mass at 3 d = 0 mg/L")
    assert out[head + 3].strip().startswith("dose 2 mg:  C_mass at 3 d = ")
    assert out[head + 4].strip() == "expected C_mass to fall (by more than 1e-06 relative)"
    assert out[-1] == "expectations: 0 of 1 as declared; 1 falsified"


def test_a_held_expectation_exits_0(tmp_path, capsys):
    path = model_with(tmp_path, 'name = "more drug, more C"\nvary = "dose"\n'
                                'over = ["0 mg", "100 mg"]\nregimen = "DOSE iv"\n'
                                'output = "C"\nat = "1 day"\neffect = "increases"')
    assert main(["check", str(path)]) == 0
    assert "ok   expect 'more drug, more C'" in capsys.readouterr().out


def test_a_bound_counterexample_shows_the_value_and_the_bounds(tmp_path):
    v = verdict(tmp_path, 'name = "x"\nvary = "dose"\nover = ["0 mg", "500 mg"]\n'
                          'regimen = "DOSE iv"\noutput = "C_mass"\nat = "1 day"\n'
                          'between = ["0 mg/L", "20 mg/L"]\neffect = "within"')
    assert not v.held
    *_, shown, expected = v.counterexample
    value = float(shown.split("= ")[1].split()[0])
    assert value > 20 and expected == "expected C_mass to stay within [0 mg/L, 20 mg/L]"
    # the value is the closed form at the dose shown: D/V exp(-k)
    line = next(c for c in v.counterexample if c.startswith("dose "))
    dose = float(line.split()[1])
    assert value == pytest.approx(dose / V * math.exp(-CL / V), rel=1e-5)


def test_an_entry_the_model_cannot_run_is_reported_as_such_not_as_falsified(tmp_path, capsys):
    # one_compartment has no WT: a dose in mg/kg cannot be given at all
    path = model_with(tmp_path, 'name = "per kg"\nvary = "dose"\nover = ["0 mg/kg", "1 mg/kg"]\n'
                                'regimen = "DOSE iv"\noutput = "C"\nat = "1 day"\n'
                                'effect = "increases"')
    report = mechsim.check_model(path)
    (v,) = report.expectations
    assert v.invalid and not v.ok and v.status == "CANNOT BE TESTED"
    assert "no parameter WT" in v.counterexample[0]
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL expect 'per kg'" in out and "CANNOT BE TESTED" in out


def test_a_zero_dose_keeps_the_other_parts_of_the_regimen(tmp_path):
    # at dose 0 only the oral part is left: C rises with the IV dose on top of it
    v = verdict(tmp_path, 'name = "x"\nvary = "dose"\nover = ["0 mg", "100 mg"]\n'
                          'regimen = "DOSE iv; 50 mg oral"\noutput = "C"\nat = "1 day"\n'
                          'effect = "increases"')
    assert v.held
    model = mechsim.load_model(model_with(tmp_path, 'name = "y"\nvary = "dose"\n'
                                                    'over = ["0 mg", "100 mg"]\n'
                                                    'regimen = "DOSE iv; 50 mg oral"\n'
                                                    'output = "C"\nat = "1 day"\n'
                                                    'effect = "unchanged"'))
    lines = check_expectation(model, model.expectations[0]).counterexample
    zero = next(line for line in lines if line.startswith("dose 0 mg"))
    assert float(zero.split("= ")[1].split()[0]) > 0  # the oral dose is still there
