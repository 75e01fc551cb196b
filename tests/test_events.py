"""Events: state-triggered discontinuities, against closed forms, with every method.

The model: a drug eliminated with a half-life of exactly one day, C(t) = C0 * 2**-t, so a
trigger C < K fires at t = log2(C0/K) and every time is known by hand."""

import math

import numpy as np
import pytest

import mechsim
from mechsim import ParseError, SolverError, UnitError, ValidationError

HEAD = """
[model]
name = "redose"

[parameters]
V = {{ value = "10 L", note = "test" }}
CL = {{ value = "6.931471805599453 L/day", note = "half-life 1 day" }}
K = {{ value = "2 mg/L", note = "test" }}
x = {{ value = "0", note = "a flag events set" }}

[drugs.d]
molecular_weight = "100 kg/mol"

[compartments]
central = "V"

[species.C]
compartment = "central"
unit = "mg/L"
initial = "10 mg/L"

[reactions.elimination]
equation = "C ->"
rate = "CL*C"

[routes.iv]
target = "C"
{events}
"""

RESCUE = """
[[event]]
name = "rescue"
trigger = "C < K"
assign = { C = 'C + "8 mg/L"' }
"""

METHODS = ["NDF", "BDF", "Radau", "LSODA"]


def model(tmp_path, events: str):
    path = tmp_path / "redose.toml"
    path.write_text(HEAD.format(events=events))
    return mechsim.load_model(path)


def run(m, method="NDF", until="5 day", every="0.25 day", regimen=None, **kw):
    return mechsim.simulate(m, regimen, until=until, every=every, method=method, **kw)


PERIOD = math.log2(5)  # 10 mg/L falls to 2 mg/L in log2(5) days, and a rescue restores 10


@pytest.mark.parametrize("method", METHODS)
def test_a_threshold_event_fires_where_the_closed_form_crosses(tmp_path, method):
    res = run(model(tmp_path, RESCUE), method)
    np.testing.assert_allclose(res.event_times("rescue").to("day").magnitude,
                               [PERIOD, 2 * PERIOD], rtol=1e-6)
    t = res.time.to("day").magnitude
    np.testing.assert_allclose(res["C"].to("mg/L").magnitude, 10 * 2.0 ** -(t % PERIOD),
                               rtol=1e-5)
    assert [name for _, name in res.events] == ["rescue", "rescue"]


@pytest.mark.parametrize("method", METHODS)
def test_event_times_do_not_depend_on_the_output_grid(tmp_path, method):
    m = model(tmp_path, RESCUE)
    coarse, fine = run(m, method, every="1 day"), run(m, method, every="0.01 day")
    assert coarse.events == fine.events  # bit for bit: the steps do not see the outputs
    t_fine = fine.time.to("day").magnitude
    # the values too, except LSODA's interpolation at an output time, which may differ
    # in the last bit (scipy evaluates it from a different step's polynomial)
    np.testing.assert_allclose(fine["C"].magnitude[np.isin(t_fine, [1, 2, 3, 4, 5])],
                               coarse["C"].magnitude[1:],
                               rtol=1e-15 if method == "LSODA" else 0, atol=0)


@pytest.mark.parametrize("from_trigger_time, expected", [(True, 10.0), (False, 8 + 2 * 2 ** -0.5)])
def test_a_delay_and_when_the_values_are_computed(tmp_path, from_trigger_time, expected):
    """The trigger fires at log2(5) (C = 2 mg/L); half a day later the event executes,
    with C + 8 computed at the trigger (2 + 8) or at execution (2 * 2**-0.5 + 8)."""
    flag = "true" if from_trigger_time else "false"
    m = model(tmp_path, RESCUE.replace('assign', f'delay = "0.5 day"\nfrom_trigger_time = '
                                                 f'{flag}\nassign'))
    res = run(m, until="3.5 day", every="0.5 day")
    [(at, _)] = res.events
    assert at == pytest.approx(PERIOD + 0.5, rel=1e-6)
    times = np.array([at])
    after = mechsim.simulate(m, None, until="3.5 day", times=mechsim.Quantity(times, "day"))
    assert after["C"].to("mg/L").magnitude[-1] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("persistent, fired", [(True, 1), (False, 0)])
def test_a_delayed_event_whose_trigger_turns_false_is_cancelled_unless_persistent(
        tmp_path, persistent, fired):
    """C falls below 2 at log2(5) = 2.32 days; a 10 mg dose at 2.5 days raises it above 2
    before the delay (1 day) is over: a persistent event still executes, another does not."""
    m = model(tmp_path, RESCUE.replace("assign", f'delay = "1 day"\npersistent = '
                                                 f'{"true" if persistent else "false"}\nassign'))
    res = run(m, until="4 day", regimen="100 mg iv at 2.5 day")
    assert len(res.events) == fired


def test_simultaneous_events_execute_by_priority(tmp_path):
    """Two events fire together and both set x; the higher priority executes first, so the
    lower one's value stays."""
    events = """
[[event]]
name = "low"
trigger = 't >= "1 day"'
priority = 1
assign = { x = "1" }

[[event]]
name = "high"
trigger = 't >= "1 day"'
priority = 5
assign = { x = "2" }
"""
    res = run(model(tmp_path, events), until="2 day")
    assert [name for _, name in res.events] == ["high", "low"]
    assert res.events[0][0] == pytest.approx(1.0, rel=1e-9)


def test_a_parameter_set_by_a_time_event_changes_the_rest_of_the_run(tmp_path):
    events = """
[[event]]
name = "slower"
trigger = 't >= "1 day"'
assign = { CL = "CL/2" }
"""
    res = run(model(tmp_path, events), until="3 day", every="0.5 day")
    t = res.time.to("day").magnitude
    # half-life 1 day until day 1 (C = 5 mg/L), then 2 days
    exact = np.where(t < 1, 10 * 2.0 ** -t, 5 * 2.0 ** (-(t - 1) / 2))
    np.testing.assert_allclose(res["C"].to("mg/L").magnitude, exact, rtol=1e-5)


@pytest.mark.parametrize("initial_value, fires_at_zero", [(True, False), (False, True)])
def test_a_trigger_true_at_the_start_fires_only_if_it_was_false_before(
        tmp_path, initial_value, fires_at_zero):
    events = f"""
[[event]]
name = "start"
trigger = 'C > "5 mg/L"'
initial_value = {"true" if initial_value else "false"}
assign = {{ x = "x + 1" }}
"""
    res = run(model(tmp_path, events), until="2 day")
    assert (len(res.events) == 1 and res.events[0][0] == 0.0) == fires_at_zero


def test_an_equality_trigger_fires_at_its_crossing(tmp_path):
    events = """
[[event]]
name = "at_one"
trigger = 't == "1 day"'
assign = { C = '"10 mg/L"' }
"""
    res = run(model(tmp_path, events), until="2 day", every="0.5 day")
    [(at, _)] = res.events
    assert at == pytest.approx(1.0, rel=1e-9)
    # the output at the event's time shows the state after it (as at a dose)
    c = res["C"].to("mg/L").magnitude
    assert c[2] == pytest.approx(10.0, rel=1e-9) and c[1] == pytest.approx(10 * 2 ** -0.5)
    assert c[-1] == pytest.approx(10 * 2 ** -1, rel=1e-6)


def test_events_that_retrigger_each_other_forever_are_stopped(tmp_path):
    events = """
[[event]]
name = "a"
trigger = 't > "1 day" and x < 0.5'
assign = { x = "1" }

[[event]]
name = "b"
trigger = "x > 0.5"
assign = { x = "0" }
"""
    with pytest.raises(SolverError, match="events keep executing at t = 1"):
        run(model(tmp_path, events), until="2 day")


def test_a_batch_with_events_equals_its_runs_one_by_one(tmp_path):
    m = model(tmp_path, RESCUE)
    batch = mechsim.simulate_many(m, None, until="6 day", every="0.5 day",
                                  parameters={"CL": ["6.931471805599453 L/day", "4 L/day"]})
    for i, cl in enumerate(("6.931471805599453 L/day", "4 L/day")):
        single = run(m, until="6 day", every="0.5 day", overrides={"CL": cl})
        np.testing.assert_array_equal(batch.states[i], single.states)
        assert batch.result(i).events == single.events


@pytest.mark.parametrize("events, error, message", [
    ('[[event]]\ntrigger = "C + K"\nassign = { x = "1" }', ParseError, "is a value, where a"),
    ('[[event]]\ntrigger = "C < K"\nassign = { nope = "1" }', ValidationError,
     "unknown target 'nope'"),
    ('[[event]]\ntrigger = "C < K"\nassign = { V = \'"5 L"\' }', ValidationError,
     "V sets a volume or a dose's conversion"),
    ('[[event]]\ntrigger = "C < K"\nassign = { C = "1" }', UnitError,
     "the value assigned to C has dimension"),
    ('[[event]]\ntrigger = "C < K"\ndelay = "C"\nassign = { x = "1" }', UnitError,
     "the delay must be a time"),
    ('[[event]]\ntrigger = "C < 1"\nassign = { x = "1" }', UnitError, "cannot compare"),
    ('[[event]]\ntrigger = "C < K"', ParseError, "assign is required"),
    ('[[event]]\ntrigger = "C < K"\nassign = { x = "1" }\nsoon = 1', ParseError,
     "unknown key 'soon'"),
])
def test_bad_events_are_refused_with_one_line(tmp_path, events, error, message):
    with pytest.raises(error, match=message) as info:
        model(tmp_path, events)
    assert "redose.toml:" in str(info.value) and "\n" not in str(info.value)


def test_mechsim_show_lists_events(tmp_path):
    from mechsim.describe import describe_model

    text = describe_model(model(tmp_path, RESCUE + """
[[event]]
name = "late"
trigger = 't > "2 d"'
assign = { x = "1" }
delay = "1 h"
persistent = false
"""))
    events = text.split("events (")[1].splitlines()[1:3]
    assert events[0].split() == ["rescue", "when", "C", "<", "K:", "C", "=", "C", "+",
                                 '"8', 'mg/L"']
    assert "late" in events[1] and "delay 1 h" in events[1] and "not persistent" in events[1]


@pytest.mark.parametrize("method", METHODS)
def test_a_trigger_on_its_threshold_at_a_dose_fires_once_and_the_run_ends(tmp_path, method):
    # t >= 1 day is exactly 0 where the dose at day 1 starts a piece
    m = model(tmp_path, """
[[event]]
name = "e"
trigger = 't >= "1 day"'
assign = { x = "x + 1" }
""")
    res = run(m, method, until="3 day", every="1 day", regimen="100 mg iv at 1 day")
    assert [name for _, name in res.events] == ["e"]
    assert res.events[0][0] == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_a_trigger_that_turns_true_just_after_the_start_fires_there(tmp_path, method):
    # C = 10 * 2**-t starts on the threshold: C < 10 is false at t = 0 and true just after,
    # so the event fires at 0+ (SBML: a change from false to true)
    m = model(tmp_path, """
[[event]]
name = "e"
trigger = 'C < "10 mg/L"'
assign = { x = "x + 1" }
""")
    res = run(m, method, until="3 day", every="1 day")
    assert [name for _, name in res.events] == ["e"]
    assert res.events[0][0] == pytest.approx(0.0, abs=1e-6)
    # and again after a dose lifts C above 10 and it falls through 10 at 2.5 + log2(1.17678)
    res = run(m, method, until="3 day", every="1 day", regimen="100 mg iv at 2.5 day")
    times = [t for t, _ in res.events]
    assert times[0] == pytest.approx(0.0, abs=1e-6)
    lifted = 10 * 2 ** -2.5 + 10          # mg/L just after the dose
    assert times[1] == pytest.approx(2.5 + math.log2(lifted / 10), rel=1e-6)
