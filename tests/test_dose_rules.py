"""Dosing rules that react to the simulated patient (mechsim.dose_rules), checked against
hand computations on the one-compartment model: V = 10 L and a half-life of exactly 1 day,
so 100 mg IV gives 10 mg/L that halves every day, C(t) = C0 * 2**-t."""

import math

import numpy as np
import pytest

from mechsim import Regimen, simulate, simulate_many
from mechsim.dose_rules import DoseRule
from mechsim.errors import MechsimError, RegimenError

METHODS = ["NDF", "LSODA"]


def run(regimen, method="LSODA", **kw):
    kw.setdefault("until", "6 day")
    if "times" not in kw:
        kw.setdefault("every", "0.5 day")
    return simulate("one_compartment", regimen, method=method, rtol=1e-10, **kw)


def actions(res):
    return [(round(d.day, 6), d.action, d.fraction) for d in res.doses]


@pytest.mark.parametrize("text", [
    '10 mg/kg iv every 7 d x 8, skip if NK < 0.2 * baseline(NK)',
    '100 mg iv on days 1,8,15 of 28-day cycles, reduce to 50% after C > "100 mg/L"',
    '100 mg iv every 1 d, reduce to 25% if C > 3 and t > "2 d", hold while C >= K',
    '100 mg iv every 2 d x 3, add 50 mg iv over 2 h when C_mass < "3 mg/L"',
    "100 mg iv every 1 d x 5; 4 mg oral daily, skip if not (X < 1 or Y > 2)",
])
def test_rules_round_trip_through_text(text):
    regimen = Regimen.parse(text)
    assert regimen.rules
    assert Regimen.parse(str(regimen)) == regimen
    assert str(Regimen.parse(str(regimen))) == str(regimen)


def test_rules_are_part_of_a_regimens_value():
    plain = Regimen.parse("100 mg iv every 1 d x 5")
    ruled = Regimen.parse('100 mg iv every 1 d x 5, skip if C > "1 mg/L"')
    assert plain != ruled and ruled.sequences == plain.sequences
    assert (ruled & plain).rules == ruled.rules


@pytest.mark.parametrize("text, expected", [
    ("100 mg iv every 1 d, skip if", "skip if CONDITION"),
    ("100 mg iv every 1 d, skip if C + 1", "a condition"),
    ("100 mg iv every 1 d, reduce to 150% if C > 1", "between 0 and 100"),
    ("100 mg iv every 1 d, reduce to half if C > 1", "reduce to P% if"),
    ("100 mg iv every 1 d, add 5 mg iv every 2 d when C > 1", "one dose"),
    ("100 mg iv every 1 d, add 5 mg iv", "add DOSE ROUTE when"),
    ("100 mg iv every 1 d, hold if C > 1", "hold while"),
    ("100 mg iv every 1 d, skip if __import__('os')", "expression"),
])
def test_malformed_rules_are_refused_in_one_line(text, expected):
    with pytest.raises(RegimenError) as info:
        Regimen.parse(text)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_a_rule_needs_doses_to_act_on():
    with pytest.raises(RegimenError, match="scheduled doses"):
        Regimen((), (DoseRule("skip", "C > 1"),))


@pytest.mark.parametrize("method", METHODS)
def test_skip_if(method):
    # pre-dose levels: day 1: 5; day 2: 7.5 > 6, skipped; day 3: 3.75; day 4: 6.875 > 6
    res = run('100 mg iv every 1 d x 5, skip if C_mass > "6 mg/L"', method)
    assert actions(res) == [(0, "given", 1), (1, "given", 1), (2, "skipped", 0),
                            (3, "given", 1), (4, "skipped", 0)]
    c = res["C_mass"].to("mg/L").magnitude
    t = res.time.to("day").magnitude
    expected = sum(10 * 2.0 ** -(t - d) * (t >= d) for d in (0, 1, 3))
    np.testing.assert_allclose(c, expected, rtol=1e-6)
    assert not res.diagnostics.conservation_residuals  # the plan's book no longer holds


@pytest.mark.parametrize("method", METHODS)
def test_reduce_after_holds_from_the_first_time_on(method):
    res = run('100 mg iv every 1 d x 5, reduce to 50% after C_mass > "6 mg/L"', method)
    assert actions(res) == [(0, "given", 1), (1, "given", 1), (2, "reduced", 0.5),
                            (3, "reduced", 0.5), (4, "reduced", 0.5)]
    t = res.time.to("day").magnitude
    expected = sum(10 * f * 2.0 ** -(t - d) * (t >= d)
                   for d, f in ((0, 1), (1, 1), (2, .5), (3, .5), (4, .5)))
    np.testing.assert_allclose(res["C_mass"].to("mg/L").magnitude, expected, rtol=1e-6)


def test_reduce_if_acts_on_that_dose_only():
    res = run('100 mg iv every 1 d x 5, reduce to 50% if C_mass > "6 mg/L"')
    # day 2: 7.5 -> 50 mg; day 3: 6.25 -> 50 mg; day 4: 5.625 -> 100 mg
    assert actions(res) == [(0, "given", 1), (1, "given", 1), (2, "reduced", .5),
                            (3, "reduced", .5), (4, "given", 1)]


def test_skip_wins_over_reduce_and_the_smallest_reduction_is_given():
    res = run('100 mg iv every 1 d x 3, reduce to 50% if C_mass > "1 mg/L", '
              'reduce to 25% if C_mass > "2 mg/L", skip if C_mass > "7 mg/L"')
    # day 1: 5 mg/L -> 25 %; day 2: 2.5 + 1.25 = 3.75 mg/L -> 25 %
    assert actions(res) == [(0, "given", 1), (1, "reduced", .25), (2, "reduced", .25)]
    res = run('100 mg iv every 1 d x 3, reduce to 50% if C_mass > "1 mg/L", '
              'skip if C_mass > "4 mg/L"')
    assert actions(res)[1] == (1, "skipped", 0)


@pytest.mark.parametrize("method", METHODS)
def test_hold_gives_the_dose_when_the_condition_ends(method):
    # day 2: 7.5 mg/L > 6: held until C falls to 6, at t = 2 + log2(7.5/6)
    res = run('100 mg iv every 1 d x 3, hold while C_mass > "6 mg/L"', method,
              until="4 day")
    late = 2 + math.log2(7.5 / 6)
    assert [d.action for d in res.doses] == ["given", "given", "held", "given late"]
    assert res.doses[3].day == pytest.approx(late, rel=1e-7)
    c = res["C_mass"].to("mg/L").magnitude
    t = res.time.to("day").magnitude
    expected = sum(10 * 2.0 ** -(t - d) * (t >= d) for d in (0, 1, late))
    np.testing.assert_allclose(c, expected, rtol=1e-6)


def test_a_held_dose_still_held_at_the_next_dose_is_dropped():
    # held at day 1 (5 mg/L > 4.5); at day 1.1 (4.67 mg/L) the next dose is held too and
    # replaces it; C reaches 4.5 mg/L at 1 + log2(5/4.5), where that one is given
    res = run('100 mg iv at 0 d; 100 mg iv at 1 d; 100 mg iv at 1.1 d, '
              'hold while C_mass > "4.5 mg/L"', until="3 day")
    assert [(round(d.day, 6), d.action) for d in res.doses] == [
        (0, "given"), (1, "dropped"), (1.1, "held"), (round(1 + math.log2(5 / 4.5), 6),
                                                      "given late")]


@pytest.mark.parametrize("method", METHODS)
def test_add_gives_a_dose_where_the_condition_turns_true(method):
    # C falls through 3 mg/L at t = log2(10/3): 50 mg (5 mg/L) is added there
    cross = math.log2(10 / 3)
    res = run('100 mg iv every 3 d x 2, add 50 mg iv when C_mass < "3 mg/L"', method,
              until="3.5 day", times=["0 d", "1 d", "2 d", "3 d", "3.5 d"])
    assert [d.action for d in res.doses] == ["given", "added", "given"]
    assert res.doses[1].day == pytest.approx(cross, rel=1e-6)
    t = np.array([0, 1, 2, 3, 3.5])
    expected = 10 * 2.0 ** -t + 5 * 2.0 ** -(t - cross) * (t >= cross) + 10 * 2.0 ** -(t - 3) * (t >= 3)
    np.testing.assert_allclose(res["C_mass"].to("mg/L").magnitude, expected, rtol=1e-6)
    assert res.pre_dose_days.size == 3


def test_an_added_infusion_runs_for_its_duration():
    # a 1-day infusion of 50 mg from the crossing; without elimination the amount added
    # would be 50 mg: compare the total drug (body + eliminated) with the doses
    cross = math.log2(10 / 3)
    res = run('100 mg iv at 0 d, add 50 mg iv over 1 d when C_mass < "3 mg/L"',
              until="3 day", times=["0 d", f"{cross + 0.5} d", "3 d"])
    assert [d.action for d in res.doses] == ["given", "added"]
    mw = 150_000.0  # g/mol
    total = (res["C"][-1].to("nM").magnitude * 10 + res["eliminated"][-1].to("nmol").magnitude)
    assert total * mw * 1e-6 == pytest.approx(150.0, rel=1e-6)  # mg
    half = (res["C"][1].to("nM").magnitude * 10 + res["eliminated"][1].to("nmol").magnitude)
    assert half * mw * 1e-6 == pytest.approx(125.0, rel=1e-6)


def test_baseline_is_the_initial_value_of_a_species():
    # cd38: NK cells start at 1 (relative); isatuximab depletes them below 20 % within
    # a week, so weekly doses after the first are held until NK cells recover
    res = simulate("cd38_myeloma", "10 mg/kg iv every 7 days x 4, "
                   "skip if NK < 0.2 * baseline(NK)", until="4 week", every="1 day")
    nk_before = [res["NK"].magnitude[np.argmin(abs(res.time.to("day").magnitude - d))]
                 for d in (7, 14, 21)]
    assert all(v < 0.2 for v in nk_before)
    assert [d.action for d in res.doses] == ["given", "skipped", "skipped", "skipped"]


def test_conditions_are_checked_against_the_model():
    with pytest.raises(MechsimError, match="unknown|not defined|Nope"):
        run('100 mg iv every 1 d, skip if Nope > 1')
    with pytest.raises(MechsimError, match="baseline"):
        run('100 mg iv every 1 d, skip if C < baseline(CL)')
    with pytest.raises(MechsimError, match="cannot compare"):
        run('100 mg iv every 1 d, skip if C_mass > "1 h"')


def test_results_do_not_depend_on_the_output_grid():
    text = '100 mg iv every 1 d x 5, hold while C_mass > "6 mg/L"'
    coarse = run(text, every="1 day")
    fine = run(text, every="0.05 day")
    assert actions(coarse) == actions(fine)
    np.testing.assert_allclose(coarse["C_mass"].magnitude,
                               fine["C_mass"].magnitude[::20], rtol=1e-6)


def test_batches_report_the_decisions_of_each_run():
    text = '100 mg iv every 1 d x 3, skip if C_mass > "6 mg/L"'
    batch = simulate_many("one_compartment", text, parameters={"CL": ["6.931471805599453 L/day",
                                                             "20 L/day"]},
                          until="3 day", every="1 day")
    logs = dict(batch.dose_logs)
    assert [d.action for d in logs[0]] == ["given", "given", "skipped"]
    assert [d.action for d in logs[1]] == ["given", "given", "given"]
    assert [d.action for d in batch.result(0).doses] == ["given", "given", "skipped"]


def test_a_regimen_without_rules_reports_no_decisions():
    assert run("100 mg iv every 1 d x 3").doses == ()


def test_a_scenario_arm_with_rules_writes_its_decisions(tmp_path):
    import csv

    from mechsim.scenario import run_scenario

    path = tmp_path / "adaptive.toml"
    path.write_text('''
[scenario]
name = "adaptive"
description = "a dose skipped while the level is high"
model = "one_compartment"
until = "4 days"
every = "1 day"
outputs = ["C_mass"]

[arms.ruled]
regimen = '100 mg iv every 1 d x 4, skip if C_mass > "6 mg/L"'

[arms.plain]
regimen = "100 mg iv every 1 d x 4"
''')
    run = run_scenario(path, tmp_path / "out")
    names = sorted(p.name for p in run.files)
    assert "ruled_doses.csv" in names and "plain_doses.csv" not in names
    with (tmp_path / "out" / "ruled_doses.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(float(r["time[d]"]), r["action"]) for r in rows] == [
        (0, "given"), (1, "given"), (2, "skipped"), (3, "given")]


def test_an_added_dose_is_checked_before_the_run():
    # the condition never holds, but the dose names a route the model does not have
    with pytest.raises(MechsimError, match="route 'sc'|route sc|no dosing route"):
        run('100 mg iv every 1 d x 3, add 5 mg sc when C_mass < "1 mg/L"')


def test_a_held_dose_keeps_its_reduction():
    # reduce to 50 % after C > 6 (true at day 2: 7.5 mg/L), and hold while C > 6: the dose
    # of day 2 is held and given at 50 % when C falls to 6 mg/L
    res = run('100 mg iv every 1 d x 3, reduce to 50% after C_mass > "6 mg/L", '
              'hold while C_mass > "6 mg/L"', until="4 day", times=["2.5 d", "4 d"])
    late = 2 + math.log2(7.5 / 6)
    assert [d.action for d in res.doses] == ["given", "given", "held", "given late"]
    assert res.doses[3].fraction == 0.5
    c = res["C_mass"].to("mg/L").magnitude
    expected = [10 * 2 ** -t + 10 * 2 ** -(t - 1) + 5 * 2 ** -(t - late) for t in (2.5, 4.0)]
    np.testing.assert_allclose(c, expected, rtol=1e-6)
