"""simulate_many: many runs at once, identical to one run at a time, whatever the workers."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mechsim
from mechsim import SolverError, UnitError, ValidationError, simulate, simulate_many
from mechsim.testing import bolus_1cpt, infusion_1cpt

from budget import examples

pytest.importorskip("numba")

ISATUXIMAB = ("10 mg/kg iv over 1 h on days 1,8,15,22 of 28-day cycle x 1 "
              "then on days 1,15 of 28-day cycles")
CV30 = ("CLinf_ref", "V1_ref", "kg", "k_adcc")


def lognormal_patients(model, n, seed=7, cv=0.3):
    """{name: Quantity array}: log-normal CV 30 % around the model's values (the W3 setup)."""
    rng = np.random.default_rng(seed)
    sd = math.sqrt(math.log(1 + cv ** 2))
    return {name: model.parameters_by_name[name].value *
            np.exp(rng.normal(-sd ** 2 / 2, sd, n)) for name in CV30}


@pytest.fixture(scope="module")
def cd38():
    return mechsim.load_model("cd38_myeloma")


@pytest.fixture(scope="module")
def population(cd38):
    patients = lognormal_patients(cd38, 6)
    batch = simulate_many(cd38, ISATUXIMAB, parameters=patients, until="120 day",
                          every="1 day", workers=2)
    return patients, batch


def one_at_a_time(model, patients, i, method, **kw):
    return simulate(model.with_parameters({k: v[i] for k, v in patients.items()}), ISATUXIMAB,
                    until="120 day", every="1 day", method=method, **kw)


def relative_gap(a, b, floor=1e-9):
    big = np.abs(b) > floor
    return float(np.max(np.abs(a - b)[big] / np.abs(b)[big]))


def test_batch_is_identical_to_one_run_at_a_time(cd38, population):
    patients, batch = population
    assert batch.method == "NDF" and len(batch) == 6
    for i in range(6):
        single = one_at_a_time(cd38, patients, i, "NDF")
        np.testing.assert_array_equal(batch.states[i], single.states)
        res = batch.result(i)
        np.testing.assert_array_equal(res["RO"].magnitude, single["RO"].magnitude)
        np.testing.assert_array_equal(res.before_dose("C")[1].magnitude,
                                      single.before_dose("C")[1].magnitude)
        assert res.diagnostics == single.diagnostics


def test_compiled_engine_agrees_with_lsoda_to_1e_6(cd38, population):
    # the accuracy bar: 1e-6 relative on values above 1e-9, same rtol/atol
    patients, batch = population
    for i in (0, 3):
        lsoda = one_at_a_time(cd38, patients, i, "LSODA")
        assert relative_gap(batch.states[i], lsoda.states) < 1e-6


def test_observables_and_parameters_come_back_with_units(cd38, population):
    patients, batch = population
    ro = batch["RO"]
    assert ro.shape == (6, 121)
    assert batch["C_mass"].units == mechsim.ureg("mg/L").units
    np.testing.assert_allclose(batch.parameter("kg").to("1/day").magnitude,
                               patients["kg"].to("1/day").magnitude, rtol=1e-12)
    # RO recomputed by hand from the states
    r, rc = batch["R"].magnitude, batch["RC"].magnitude
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(ro.magnitude[:, 1:], (rc / (r + rc))[:, 1:], rtol=1e-12)
    with pytest.raises(KeyError, match="did you mean 'C_mass'"):
        batch["C_mas"]


def test_mass_balance_holds_in_every_run(population):
    _, batch = population
    for i in range(len(batch)):
        assert batch.result(i).diagnostics.max_conservation_residual < 1e-9


def test_worker_count_does_not_change_results(cd38, population):
    patients, batch = population
    serial = simulate_many(cd38, ISATUXIMAB, parameters=patients, until="120 day",
                           every="1 day", workers=1)
    np.testing.assert_array_equal(serial.states, batch.states)


def test_lsoda_fallback_in_processes_matches_simulate(cd38):
    patients = {k: v[:3] for k, v in lognormal_patients(cd38, 3, seed=3).items()}
    batch = simulate_many(cd38, ISATUXIMAB, parameters=patients, until="60 day",
                          every="1 day", method="LSODA", workers=2)
    for i in range(3):
        single = simulate(cd38.with_parameters({k: v[i] for k, v in patients.items()}),
                          ISATUXIMAB, until="60 day", every="1 day", method="LSODA")
        np.testing.assert_array_equal(batch.states[i], single.states)


def test_one_regimen_per_run_dose_sweep(cd38):
    doses = np.geomspace(0.01, 100, 5)
    regimens = [ISATUXIMAB.replace("10 mg/kg", f"{d:.6g} mg/kg") for d in doses]
    batch = simulate_many(cd38, regimens, until="60 day", every="1 day")
    assert batch.regimens[2].startswith("1 mg/kg")
    for i in (0, 4):
        single = simulate(cd38, regimens[i], until="60 day", every="1 day", method="NDF")
        np.testing.assert_array_equal(batch.states[i], single.states)
    # more drug, more occupancy on day 14 (the dose-direction property, in a batch)
    assert np.all(np.diff(batch["RO"].magnitude[:, 14]) > 0)


@examples(15)
@given(volumes=st.lists(st.floats(1, 100), min_size=1, max_size=4),
       k=st.floats(0.05, 5), infusion_days=st.sampled_from([0.0, 0.5, 2.0]))
def test_closed_form_one_compartment_over_generated_runs(volumes, k, infusion_days):
    # V varies per run, CL = k*V so each run has elimination rate k
    regimen = "1000 nmol iv" + (f" over {infusion_days} day" if infusion_days else "")
    batch = simulate_many("one_compartment", regimen, until="6 day", every="0.25 day",
                          parameters={"V": [f"{v} L" for v in volumes],
                                      "CL": [f"{k * v} L/day" for v in volumes]},
                          rtol=1e-10, atol=1e-14)
    t = batch.time.to("day").magnitude
    for i, v in enumerate(volumes):
        expected = bolus_1cpt(t, 1000, v, k) if not infusion_days else \
            infusion_1cpt(t, 1000 / infusion_days, infusion_days, v, k)
        np.testing.assert_allclose(batch["C"].to("nM").magnitude[i], expected, rtol=1e-6,
                                   atol=1e-9)


# ---- bad input --------------------------------------------------------------------------
def test_unknown_parameter_suggests_the_closest(cd38):
    with pytest.raises(ValidationError, match="unknown parameter 'k_adccc'.*did you mean 'k_adcc'"):
        simulate_many(cd38, ISATUXIMAB, parameters={"k_adccc": [0.1, 0.2]}, until="1 day")


def test_values_need_units_and_the_right_dimension(cd38):
    with pytest.raises(UnitError, match="plain numbers have no unit"):
        simulate_many(cd38, ISATUXIMAB, parameters={"V1_ref": [4.0, 5.0]}, until="1 day")
    with pytest.raises(UnitError, match="V1_ref must have the dimension"):
        simulate_many(cd38, ISATUXIMAB, parameters={"V1_ref": ["4 mL/h", "5 L"]},
                      until="1 day")


def test_per_run_inputs_must_agree_in_length(cd38):
    with pytest.raises(ValidationError, match="same number of runs.*kg: 2.*regimens: 3"):
        simulate_many(cd38, [ISATUXIMAB] * 3, parameters={"kg": ["0.01 1/day"] * 2},
                      until="1 day")


def test_an_impossible_run_is_named(cd38):
    with pytest.raises(ValidationError, match=r"V1_ref: run 1 is negative \(-4 L\)"):
        simulate_many(cd38, ISATUXIMAB, parameters={"V1_ref": ["4 L", "-4 L"]},
                      until="1 day")


AUTOCATALYTIC = """
[model]
name = "blow_up"
[parameters]
V = "1 L"
k = "0.05 1/day"
c1 = "1 nM"
[compartments]
central = "V"
[species.C]
compartment = "central"
unit = "nM"
initial = "10 nM"
[reactions.growth]
equation = "-> C"
rate = "k*C*C*V/c1"
"""


def test_a_solver_failure_names_the_run_and_the_time(write_model):
    # dC/dt = k C^2 / c1 from 10 nM reaches infinity at t = 1/(k * 10) = 1 day when k = 0.1
    model = mechsim.load_model(write_model(AUTOCATALYTIC))
    with pytest.raises(SolverError, match=r"run 1 \(k = 0.1 1/d\): solver NDF failed near "
                                          r"t = (1|0\.9\d*) day.*states involved: C; Radau "
                                          r"and LSODA failed too; hint: every stiff method"):
        simulate_many(model, until="3 day", parameters={"k": ["0.01 1/day", "0.1 1/day"]},
                      method="NDF")


def test_a_failed_run_is_redone_by_the_next_method(cd38, monkeypatch):
    """When NDF fails for one run, that run is integrated by Radau and reported; the others
    are untouched."""
    from mechsim.solvers import ndf, ndf_kernel

    patients = lognormal_patients(cd38, 3)
    clean = simulate_many(cd38, ISATUXIMAB, parameters=patients, until="30 day",
                          every="1 day", workers=1)
    real_chunk = ndf.solve_chunk

    second = clean.parameter_values[1]

    def chunk_failing_second_run(cm, parameters, *rest):
        # the compiled call of the chunk holding run 1 reports it as failed ...
        status, pre, counts = real_chunk(cm, parameters, *rest)
        status[np.all(parameters == second, axis=1)] = ndf_kernel.STEP_TOO_SMALL
        return status, pre, counts

    def failing(self, problem):  # ... and NDF fails again when it is redone alone
        raise SolverError("injected failure")

    monkeypatch.setattr(ndf, "solve_chunk", chunk_failing_second_run)
    monkeypatch.setattr(ndf.NDF, "solve", failing)
    redone = simulate_many(cd38, ISATUXIMAB, parameters=patients, until="30 day",
                           every="1 day", workers=1)
    assert redone.fallbacks == ((1, "Radau"),)
    assert redone.result(1).diagnostics.method == "Radau"
    assert np.array_equal(redone.states[[0, 2]], clean.states[[0, 2]])
    np.testing.assert_allclose(redone.states[1], clean.states[1], rtol=1e-5, atol=1e-9)


def test_ndf_passes_a_fast_transient_late_in_a_long_run(cd38):
    """A fast-growing tumour (N > 1e6, so a marrow receptor pool of ~1e8 nM, by day 600) binds
    each new infusion within seconds: the step needed is finer than the spacing of floats near t = 600 days.  The
    engine counts time from each segment's start, so it passes; Radau agrees."""
    overrides = {"CLinf_ref": "0.00278 L/h", "M0": "7.8 g/L", "kg": "0.035 1/day",
                 "k_pd": "0.1226 1/day", "k_adcc": "0.0441 1/day", "k_adcp": "0 1/day",
                 "k_cdc": "0 1/day", "k_apo": "0 1/day", "r0": 1.0}
    regimen = f"{ISATUXIMAB}; 4 mg oral on days 1-21 of 28-day cycles"
    fast = simulate(cd38, regimen, until="600 day", every="50 day", overrides=overrides,
                    method="NDF", rtol=1e-6)
    careful = simulate(cd38, regimen, until="600 day", every="50 day", overrides=overrides,
                       method="Radau", rtol=1e-6)
    assert fast["N"][-1].magnitude > 1e6  # the regime that used to fail
    np.testing.assert_allclose(fast["N"].magnitude, careful["N"].magnitude, rtol=1e-4)


RUNAWAY = {"M0": "18 g/L", "k_pd": "0.01 1/day", "k_adcc": "0.005 1/day", "k_adcp": "0 1/day",
           "k_cdc": "0 1/day", "k_apo": "0 1/day", "WT": "88 kg"}


def test_partial_keeps_an_unfinishable_run_up_to_where_it_stopped(cd38):
    """A tumour that nothing controls (kg 0.037/day: N ~ 4e11 x baseline by day 730) makes
    every stiff method fail near day 952.  Without ``partial`` that is an error; with it the
    run keeps its values up to the time reached, which match a run stopped earlier, and is
    listed in ``failures``; the other run is untouched."""
    regimen = f"{ISATUXIMAB}; 4 mg oral on days 1-21 of 28-day cycles"
    kg = {"kg": ["0.01 1/day", "0.037 1/day"]}
    common = dict(overrides=RUNAWAY, every="1 day", rtol=1e-6, workers=1)
    with pytest.raises(SolverError, match=r"run 1 \(kg = 0.037.*failed near t = 95\d"):
        simulate_many(cd38, regimen, parameters=kg, until="1000 day", **common)
    kept = simulate_many(cd38, regimen, parameters=kg, until="1000 day", partial=True, **common)
    assert [run for run, _, _ in kept.failures] == [1]
    reached = kept.failures[0][1]
    assert 900 < reached < 1000
    t = kept.time_days
    assert np.isnan(kept.states[1][:, t > reached]).all()
    assert np.isfinite(kept.states[1][:, t <= reached]).all()
    assert np.isfinite(kept.states[0]).all()
    shorter = simulate_many(cd38, regimen, parameters=kg, until="900 day", **common)
    early = t < 899.5  # before the last segment, where the two grids' runs differ
    np.testing.assert_allclose(kept.states[:, :, early], shorter.states[:, :, early[:901]],
                               rtol=1e-6, atol=1e-12)


def test_progress_bar_on_request_and_results_unchanged(capsys):
    kwargs = dict(parameters={"V": [f"{v} L" for v in range(1, 9)]}, until="2 day",
                  every="1 day", workers=2, chunk_size=2)
    quiet = simulate_many("one_compartment", "100 mg iv", progress=False, **kwargs)
    assert capsys.readouterr().err == ""
    shown = simulate_many("one_compartment", "100 mg iv", progress=True, **kwargs)
    assert "one_compartment:" in capsys.readouterr().err  # the bar, cleared when done
    np.testing.assert_array_equal(quiet.states, shown.states)


def test_states_before_doses_are_kept_once():
    """The state just before a dose is stored only when it is not already an output: with
    infusions that start on output times it is that output, bit for bit; a bolus jumps the
    state, and an infusion off the grid is between outputs, so those are stored.  Either way
    result(i) gives what simulate gives."""
    cases = [("100 mg iv over 2 h every 1 d x 3", "12 h", True),
             ("100 mg iv every 1 d x 3", "12 h", False),
             ("100 mg iv over 2 h every 1 d x 3", "5 h", False)]
    for regimen, every, shared in cases:
        batch = simulate_many("one_compartment", regimen, until="4 day", every=every,
                              parameters={"V": ["10 L", "20 L"]}, method="NDF")
        assert all((states is None) == shared for _, states in batch.pre_dose), regimen
        single = simulate("one_compartment", regimen, until="4 day", every=every,
                          overrides={"V": "20 L"}, method="NDF")
        days, before = batch.result(1).before_dose("C")
        np.testing.assert_array_equal(days.magnitude, single.before_dose("C")[0].magnitude)
        np.testing.assert_array_equal(before.magnitude, single.before_dose("C")[1].magnitude)


def test_run_plans_are_made_when_asked_and_match_each_run_alone():
    """A batch keeps its dose plans unmade (RunPlans): each chunk makes its own.  Any run's
    plan, made alone, equals the one made with its chunk, bit for bit, and the breakpoints
    of the whole batch are the union of every plan's, lags moving doses included."""
    from mechsim.batch import _plans
    from mechsim.doseplan import dose_plan
    from mechsim.runspec import RunSpec

    spec = RunSpec.build("one_compartment", "100 mg oral every 1 d x 4; 50 mg iv over 2 h",
                         until="3.5 day")
    cm = spec.compiled
    rows = np.tile(spec.parameters, (12, 1))
    rows[:, cm.parameter_names.index("tlag")] = np.linspace(0.0, 0.6, 12)
    rows[:, cm.parameter_names.index("V")] = np.linspace(5.0, 20.0, 12)
    _, _, plans = _plans(spec, rows, None)
    made = plans.made()
    events = spec.events()
    for i in (0, 5, 11):
        alone = dose_plan(cm, events, rows[i], spec.until)
        for one in (made[i], plans[i], plans[i:i + 3].made()[0]):
            np.testing.assert_array_equal(one.infusion_table, alone.infusion_table)
            np.testing.assert_array_equal(one.bolus_table, alone.bolus_table)
    union = np.unique(np.concatenate([p.breakpoints(spec.until) for p in made]))
    np.testing.assert_array_equal(plans.breakpoints(), union)
    assert len(union) > 10  # the lags spread the oral doses
