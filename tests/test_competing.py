"""Competing events of virtual trials (death without progression, progression by other
criteria): first-event times against closed forms, and their place in a trial."""

import math
import textwrap
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mechsim
from mechsim.analysis.competing import CompetingEvent, first_event_times
from mechsim.scenario import read_scenario
from mechsim.trial import CENSORED, PROGRESSION, Trial, TrialArm, run_trial

ISA = ("10 mg/kg iv over 1 h on days 1,8,15,22 of 28-day cycle x 1 "
       "then on days 1,15 of 28-day cycles")
POM = "4 mg oral on days 1-21 of 28-day cycles"

rates = st.floats(1e-4, 0.5)          # per day
draws = st.floats(0.0, 20.0)          # unit-exponential numbers


@given(rates, st.lists(draws, min_size=1, max_size=20))
def test_constant_hazard_time_is_the_draw_over_the_rate(rate, es):
    t = np.linspace(0.0, 100.0, 11)
    got = first_event_times(t, rate, np.array(es))
    expected = np.array([e / rate if e / rate <= 100.0 else math.inf for e in es])
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@given(rates, st.floats(-0.05, 0.05), draws)
def test_exponentially_scaled_hazard_matches_the_closed_form(rate, growth, e):
    # hazard rate*exp(a t): H(t) = rate (exp(a t) - 1)/a, so the event is at
    # t = log(1 + a E/rate)/a (or never, when a < 0 caps H below E)
    t = np.linspace(0.0, 200.0, 4001)
    scale = np.exp(growth * t)[None, :]
    got = first_event_times(t, rate, np.array([e]), scale)[0]
    if abs(growth) < 1e-9:
        exact = e / rate
    else:
        inner = 1 + growth * e / rate
        exact = math.log(inner) / growth if inner > 0 else math.inf
    if not exact <= 200.0:
        # beyond the grid (or never): no event, unless within the trapezoid rule's error
        assert got == math.inf or got > 199.0
    else:
        # the trapezoid rule and the linear interpolation inside a 0.05-day step are exact
        # to O(dt^2): well under a thousandth of a day, where an off-by-one-step error
        # would be 0.05 days
        assert got == pytest.approx(exact, rel=1e-6, abs=1e-3)


@given(rates, draws, st.floats(1.0, 5.0))
def test_a_larger_hazard_everywhere_never_delays_the_event(rate, e, factor):
    t = np.linspace(0.0, 300.0, 301)
    scale = (1.0 + 0.5 * np.sin(t / 7.0))[None, :]
    low = first_event_times(t, rate, np.array([e]), scale)[0]
    high = first_event_times(t, rate, np.array([e]), factor * scale)[0]
    assert high <= low


def test_a_hazard_whose_scale_is_unknown_ends_there():
    # a run that stopped early (NaN after day 10): no event is invented after it
    t = np.arange(0.0, 31.0)
    scale = np.ones((2, t.size))
    scale[:, 11:] = np.nan
    got = first_event_times(t, 0.1, np.array([0.5, 2.0]), scale)
    assert got[0] == pytest.approx(5.0)
    assert got[1] == math.inf


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"rate": "0.01 mg"}, "hazard per time"),
    ({"rate": "-0.01 1/month"}, ">= 0"),
    ({"note": ""}, "source or note"),
    ({"name": " "}, "needs a name"),
])
def test_bad_competing_events(kwargs, fragment):
    args = {"name": "death", "rate": "0.01 1/month", "note": "assumption", **kwargs}
    with pytest.raises(mechsim.ValidationError, match=fragment):
        CompetingEvent(**args)


def paired_trial(events, size=12, follow_up="120 day") -> Trial:
    return Trial(model="cd38_myeloma",
                 population=mechsim.load_population("icaria_population"),
                 arms=(TrialArm("isa_pd", "Isa-Pd", mechsim.Regimen.parse(f"{ISA}; {POM}"),
                                size),
                       TrialArm("pd", "Pd", mechsim.Regimen.parse(POM), size)),
                 follow_up=follow_up, control="pd", paired=True, competing=events)


DEATH = CompetingEvent("death without progression", "0.02 1/day", note="test value")
OTHER = CompetingEvent("progression by other criteria", "0.01 1/day", scale_with="N",
                       note="test value")


def test_competing_events_end_pfs_and_are_recorded():
    plain = run_trial(paired_trial(()), workers=1)
    result = run_trial(paired_trial((DEATH, OTHER)), workers=1)
    assert set(result.first_event) <= {PROGRESSION, CENSORED, DEATH.name, OTHER.name}
    assert np.sum(result.first_event == DEATH.name) > 0
    # the same patients: a competing event can only bring PFS forward
    assert np.all(result.pfs_days <= plain.pfs_days + 1e-9)
    progressed = result.first_event == PROGRESSION
    np.testing.assert_allclose(result.pfs_days[progressed], plain.pfs_days[progressed])
    assert np.all(result.progressed == (result.first_event != CENSORED))
    # paired arms share the draws: a constant-hazard death happens at the same time in
    # both arms, unless something came first in one of them
    n = len(result.arm) // 2
    for i in range(n):
        a, b = result.first_event[i], result.first_event[n + i]
        if a == b == DEATH.name:
            assert result.pfs_days[i] == pytest.approx(result.pfs_days[n + i])
    rows = {row["endpoint"] for row in result.summary()}
    assert f"  of which {DEATH.name}" in rows


def test_burden_driven_progression_comes_no_earlier_with_isatuximab():
    # the hazard follows N, which isatuximab only lowers; paired patients, same draws
    result = run_trial(paired_trial((OTHER,), size=10, follow_up="365 day"), workers=1)
    n = len(result.arm) // 2
    assert np.all(result.pfs_days[:n] >= result.pfs_days[n:] - 1e-6)


SCENARIO = textwrap.dedent(f"""
    [scenario]
    model = "cd38_myeloma"
    until = "4 weeks"
    outputs = ["M"]
    seed = 3

    [arms.pd]
    regimen = "{POM}"

    [trial]
    population = "icaria_population"
    size = 2
    follow_up = "2 months"

    [[trial.competing]]
    name = "death"
    rate = "0.01 1/month"
    source = "a test"
    """)


def test_competing_events_are_read_from_a_scenario(tmp_path):
    path = tmp_path / "s.toml"
    body = SCENARIO
    path.write_text(body)
    trial = read_scenario(path).trial
    assert trial.competing == (CompetingEvent("death", "0.01 1/month", source="a test"),)
    bad = body.replace('rate = "0.01 1/month"', 'rate = "0.01 mL"')
    path.write_text(bad)
    with pytest.raises(mechsim.ParseError) as info:
        read_scenario(path)
    assert "hazard per time" in str(info.value)
    line = bad.splitlines().index('rate = "0.01 mL"') + 1
    assert str(info.value).startswith(f"{path}:{line}:")
    path.write_text(body.replace('source = "a test"', 'source = "a test"\nwhen = "now"'))
    with pytest.raises(mechsim.ParseError, match="unknown key 'when'"):
        read_scenario(path)


def test_trial_refuses_reserved_event_names():
    with pytest.raises(mechsim.ValidationError, match="distinct names"):
        replace(paired_trial(()), competing=(CompetingEvent(PROGRESSION, "0.1 1/day",
                                                            note="x"),))


def test_cli_reports_a_bad_competing_event_in_one_line_and_writes_nothing(tmp_path):
    import subprocess
    import sys

    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO.replace('rate = "0.01 1/month"', 'rate = "1 %"'))
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "mechsim", "run", str(scenario), "--out",
                           str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and "hazard per time" in done.stderr
    line = scenario.read_text().splitlines().index('rate = "1 %"') + 1
    assert f"{scenario}:{line}:" in done.stderr
    assert not out.exists()
