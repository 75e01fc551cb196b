"""The engine against closed-form pharmacokinetics (SciPy-style exact oracles)."""

import math
from pathlib import Path

import numpy as np
import pytest

import mechsim
from mechsim import SolverError, UnitError, ValidationError, simulate
from mechsim.testing import accumulation_ratio, bolus_1cpt, infusion_1cpt, oral_1cpt, superpose

V, K = 10.0, math.log(2)  # one_compartment defaults: L, 1/day
METHODS = ["LSODA", "BDF", "Radau", "NDF"]  # NDF: the numba-compiled engine
TIGHT = dict(rtol=1e-10, atol=1e-14)


def conc(res):
    return res["C"].to("nM").magnitude


@pytest.mark.parametrize("method", METHODS)
def test_iv_bolus_matches_closed_form(method):
    res = simulate("one_compartment", "1000 nmol iv", until="10 day", every="0.25 day",
                   method=method, **TIGHT)
    t = res.time.to("day").magnitude
    np.testing.assert_allclose(conc(res), bolus_1cpt(t, 1000, V, K), rtol=1e-6)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("infusion", ["over 2 day", "at 500 nmol/day", "at 20.8333333333333333 nmol/h"])
def test_constant_rate_infusion_matches_closed_form(method, infusion):
    res = simulate("one_compartment", f"1000 nmol iv {infusion}", until="6 day",
                   every="0.1 day", method=method, **TIGHT)
    t = res.time.to("day").magnitude
    np.testing.assert_allclose(conc(res), infusion_1cpt(t, 500, 2, V, K), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_first_order_absorption_with_bioavailability_and_lag(method):
    res = simulate("one_compartment", "1000 nmol oral", until="8 day", every="0.05 day",
                   overrides={"F": "0.6", "tlag": "6 h", "ka": "1.5 1/day"}, method=method,
                   **TIGHT)
    t = res.time.to("day").magnitude
    expected = oral_1cpt(t, 1000, V, K, ka=1.5, f=0.6, lag=0.25)
    np.testing.assert_allclose(conc(res), expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_repeated_doses_superpose(method):
    res = simulate("one_compartment", "1000 nmol iv every 12 h x 6", until="5 day",
                   every="0.1 day", method=method, **TIGHT)
    t = res.time.to("day").magnitude
    expected = superpose(lambda s: bolus_1cpt(s, 1000, V, K), np.arange(6) * 0.5, t)
    np.testing.assert_allclose(conc(res), expected, rtol=1e-6)


def test_steady_state_accumulation_ratio():
    tau = 1.0
    res = simulate("one_compartment", "1000 nmol iv every 1 day", until="40 day",
                   every="1 day", **TIGHT)
    # right-continuous: the value at a dose time includes that dose (the last one, at
    # day 39: no dose is given at `until`)
    peaks = conc(res)
    np.testing.assert_allclose(peaks[-2] / (1000 / V), accumulation_ratio(K, tau), rtol=1e-6)
    # the value just before the last dose is the steady-state trough
    _, troughs = res.before_dose("C")
    expected_trough = 1000 / V * accumulation_ratio(K, tau) * math.exp(-K * tau)
    np.testing.assert_allclose(troughs.to("nM").magnitude[-1], expected_trough, rtol=1e-6)


def test_mass_dose_converted_with_molecular_weight_and_body_weight(write_model):
    # 100 mg of a 150 kg/mol drug is 666.67 nmol
    res = simulate("one_compartment", "100 mg iv", until="1 day", every="1 day", **TIGHT)
    np.testing.assert_allclose(conc(res)[0], 100e-3 / 150e3 * 1e9 / V, rtol=1e-12)
    np.testing.assert_allclose(res["C_mass"].to("mg/L").magnitude[0], 10.0, rtol=1e-12)


def test_per_body_weight_dose_needs_WT(write_model):
    with pytest.raises(mechsim.RegimenError, match="per body weight.*no parameter WT"):
        simulate("one_compartment", "1 mg/kg iv", until="1 day")


def test_results_do_not_depend_on_the_output_grid():
    regimen = "1000 nmol iv over 3 h every 1 day x 3; 500 nmol oral every 8 h x 5"
    coarse = simulate("one_compartment", regimen, until="4 day", every="1 day")
    fine = simulate("one_compartment", regimen, until="4 day", every="0.01 day")
    odd = simulate("one_compartment", regimen, until="4 day",
                   times=mechsim.Quantity([0, 1, 2, 3, 4], "day"))
    t_fine = fine.time.to("day").magnitude
    pick = np.isin(np.round(t_fine, 9), [0, 1, 2, 3, 4])
    for name in ("C", "depot", "eliminated"):
        a, b, c = coarse[name].magnitude, fine[name].magnitude[pick], odd[name].magnitude
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(a, c, rtol=1e-6, atol=1e-9)


def test_bolus_is_an_exact_jump_and_value_before_dose_is_kept():
    res = simulate("one_compartment", "1000 nmol iv every 1 day x 2", until="2 day",
                   every="1 day", **TIGHT)
    times, before = res.before_dose("C")
    np.testing.assert_allclose(times.to("day").magnitude, [0, 1])
    np.testing.assert_allclose(before.magnitude, [0, 50.0], rtol=1e-8)
    np.testing.assert_allclose(conc(res)[1], 150.0, rtol=1e-8)


def test_mass_balance_residual_reported():
    res = simulate("one_compartment", "1000 nmol iv over 2 h every 1 day x 3; 200 nmol oral",
                   until="5 day", **TIGHT)
    residuals = res.diagnostics.conservation_residuals
    assert list(residuals) == ["V*C + depot + eliminated"]
    assert residuals["V*C + depot + eliminated"] < 1e-8
    assert res.diagnostics.steps > 0 and res.diagnostics.rhs_evaluations > 0


def test_per_state_tolerances_accepted_and_checked():
    simulate("one_compartment", "1 nmol iv", until="1 day", atol=[1e-12, 1e-12, 1e-12])
    with pytest.raises(ValidationError, match="one per state"):
        simulate("one_compartment", "1 nmol iv", until="1 day", atol=[1e-12, 1e-12])


@pytest.mark.parametrize("bad, message", [
    ("3", "must be a time with a unit"),
    ("3 mg", "must be a time"),
    ("0 day", "must be after 0"),
])
def test_until_is_checked(bad, message):
    arg = int(bad) if bad.isdigit() else bad
    with pytest.raises((UnitError, ValidationError), match=message):
        simulate("one_compartment", None, until=arg)


def test_unknown_route_is_named():
    with pytest.raises(mechsim.RegimenError, match="no dosing route 'sc'.*iv, oral"):
        simulate("one_compartment", "1 mg sc", until="1 day")


def test_solver_failure_names_time_and_states(write_model):
    path = write_model("""
[parameters]
k = "1 1/day"
[species.x]
unit = "nmol"
initial = "1 nmol"
[reactions.explode]
equation = "-> x"
rate = "k*x*x*x/(1 nmol)**2"
""".replace("/(1 nmol)**2", "*kk"))
    path.write_text(path.read_text().replace('k = "1 1/day"',
                                             'k = "1 1/day"\nkk = "1 1/nmol**2"'))
    with pytest.raises(SolverError, match=r"t = .*states involved: x.*hint"):
        simulate(path, None, until="10 day")


TWO_DRUGS = """
[drugs.antibody]
molecular_weight = "148 kDa"
[drugs.small]
molecular_weight = "273.24 g/mol"

[parameters]
V = "5 L"
Vs = "50 L"
WT = "80 kg"
k = "0.1 1/day"
ks = "2 1/day"
ka = "4 1/day"
F = "0.7"

[compartments]
plasma = "V"
body = "Vs"

[species.A]
compartment = "plasma"
unit = "nM"
[species.gut]
unit = "umol"
[species.S]
compartment = "body"
unit = "uM"

[reactions.clear_A]
equation = "A ->"
rate = "k*A"
[reactions.absorb]
equation = "gut -> S"
rate = "ka*gut"
[reactions.clear_S]
equation = "S ->"
rate = "ks*S"

[routes.iv]
target = "A"
drug = "antibody"
[routes.oral]
target = "gut"
drug = "small"
bioavailability = "F"
"""


def test_two_drugs_each_converted_with_its_own_molecular_weight(write_model):
    path = write_model(TWO_DRUGS)
    res = simulate(path, "10 mg/kg iv; 4 mg oral every 1 day x 3", until="3 day",
                   every="0.5 day", **TIGHT)
    t = res.time.to("day").magnitude
    antibody_nmol = 10e-3 * 80 / 148e3 * 1e9            # 10 mg/kg x 80 kg of 148 kDa
    np.testing.assert_allclose(res["A"].to("nM").magnitude,
                               bolus_1cpt(t, antibody_nmol, 5, 0.1), rtol=1e-6)
    small_nmol = 4e-3 / 273.24 * 1e9
    expected_s = superpose(lambda s: oral_1cpt(s, small_nmol, 50, 2, ka=4, f=0.7), [0, 1, 2], t)
    np.testing.assert_allclose(res["S"].to("nM").magnitude, expected_s, rtol=1e-6, atol=1e-9)


def test_result_is_frozen_and_exports(tmp_path):
    res = simulate("one_compartment", "100 mg iv", until="1 day", every="0.5 day")
    with pytest.raises(ValueError):
        res.states[0, 0] = 1.0
    with pytest.raises(AttributeError):
        res.model = "other"
    frame = res.to_dataframe(["C_mass"])
    assert list(frame.columns) == ["time [d]", "C_mass [mg/L]"]
    np.testing.assert_allclose(frame["C_mass [mg/L]"], [10, 10 * 2 ** -0.5, 5], rtol=1e-6)
    with pytest.raises(ValidationError, match="no output named 'X'"):
        res["X"]


def test_value_before_an_infusion_starts_is_kept():
    res = simulate("one_compartment", "1000 nmol iv over 1 h every 1 day x 3", until="3 day",
                   **TIGHT)
    times, before = res.before_dose("C")
    np.testing.assert_allclose(times.to("day").magnitude, [0, 1, 2])
    expected = infusion_1cpt(np.array([1.0, 2.0]), 24000, 1 / 24, V, K) + \
        infusion_1cpt(np.array([0.0, 1.0]), 24000, 1 / 24, V, K)
    np.testing.assert_allclose(before.magnitude[1:], expected, rtol=1e-6)


def test_default_absolute_tolerance_follows_each_state_unit():
    # cytokines in pg/mL are 1e-9 g/L in canonical units: a canonical 1e-12 would be 1000 pg/mL
    res = simulate("cd40_apc", "10 mg/kg iv", until="1 day")
    atol = dict(zip(res.state_names, res.diagnostics.atol))
    assert atol["IL6"] == pytest.approx(1e-21)   # 1e-12 pg/mL in g/L
    assert atol["D"] == pytest.approx(1e-12)     # 1e-12 nM
    assert atol["depot"] == pytest.approx(1e-12)  # 1e-12 nmol


def test_no_drug_mass_balance_is_not_rounding_noise():
    # found by the CD40 property tests: 1e-30 nM of rounding in an empty drug law read as 1.0
    model = mechsim.load_model("cd40_apc").with_parameters({"V1": "1.141582235320785 L"})
    res = simulate(model, None, until="24 weeks", every="0.25 day")
    assert res.diagnostics.max_conservation_residual < 1e-6


def test_output_times_a_rounding_error_from_a_dose_are_merged():
    # default grid for 24 weeks contains 63.00000000000001 next to the dose at day 63
    regimen = ("10 mg/kg iv over 1 h on days 1,8,15,22 of 28-day cycle x 1 then on days 1,15 "
               "of 28-day cycles; 4 mg oral on days 1-21 of 28-day cycles")
    res = simulate("cd38_myeloma", regimen, until="24 weeks")
    assert np.all(np.diff(res.time_days) > 1e-6)
    res = simulate("one_compartment", "1 nmol iv every 1 day x 3", until="3 day",
                   times=mechsim.Quantity([0, 1 + 1e-14, 2 - 1e-13, 3], "day"))
    np.testing.assert_array_equal(res.time_days, [0, 1, 2, 3])


@pytest.mark.parametrize("hill", ["1.5", "2.3"])  # below 1 the Jacobian is infinite at RO = 0
def test_fractional_hill_survives_washout(hill):
    # RC dips below zero by solver noise after washout; RO**1.5 of that was NaN and the run
    # failed with "Integration successful."
    res = simulate("cd38_myeloma", "1 mg/kg iv", until="52 weeks", overrides={"hill": hill})
    assert np.isfinite(res.states).all()
    assert res["RC"].magnitude.min() > -1e-9


# ---- doses per body surface area (mg/m2) ---------------------------------------------------
BSA_MODEL = (Path(__file__).resolve().parent.parent / "models" / "one_compartment.toml") \
    .read_text().replace("[compartments]", 'BSA = { value = "1.8 m2", note = "test" }\n\n'
                         "[compartments]")


def test_a_dose_per_body_surface_area_is_multiplied_by_bsa(tmp_path):
    path = tmp_path / "bsa.toml"
    path.write_text(BSA_MODEL)
    res = simulate(path, "56 mg/m2 iv over 30 min; 20 mg/m2 iv at 2 day", until="3 day",
                   every="0.25 day", **TIGHT)
    t = res.time.to("day").magnitude
    # one compartment, V = 10 L, CL = ln 2 L/day * 10: 56 mg/m2 x 1.8 m2 over 30 min, then
    # 20 mg/m2 x 1.8 m2 as a bolus, in nmol of the 150 kDa drug
    k, mw = math.log(2), 150e3
    infused = 56 * 1.8e-3 / mw * 1e9
    expected = infusion_1cpt(t, infused / (0.5 / 24), 0.5 / 24, 10, k) + \
        np.where(t >= 2, bolus_1cpt(np.maximum(t - 2, 0), 20 * 1.8e-3 / mw * 1e9, 10, k), 0)
    np.testing.assert_allclose(res["C"].to("nM").magnitude, expected, rtol=1e-7)
    # the same as the dose in mg for this BSA, and scaled by BSA as an override
    same = simulate(path, "100.8 mg iv over 30 min; 36 mg iv at 2 day", until="3 day",
                    every="0.25 day", **TIGHT)
    np.testing.assert_allclose(res["C"].magnitude, same["C"].magnitude, rtol=1e-9)
    larger = simulate(path, "56 mg/m2 iv over 30 min; 20 mg/m2 iv at 2 day", until="3 day",
                      every="0.25 day", overrides={"BSA": "2.16 m2"}, **TIGHT)
    np.testing.assert_allclose(larger["C"].magnitude, 1.2 * res["C"].magnitude, rtol=1e-9)


def test_mg_per_m2_reads_and_writes_back_as_clinicians_write_it():
    regimen = mechsim.Regimen.parse("56 mg/m^2 iv at 28 mg/m2/h; 20 mg/m2 iv every 1 week x 2")
    assert str(regimen) == "56 mg/m2 iv at 28 mg/h/m2; 20 mg/m2 iv every 1 week x 2"
    assert mechsim.Regimen.parse(str(regimen)) == regimen
    dose = regimen.administrations(math.inf)[0].dose
    assert dose.per_body_surface and not dose.per_body_weight
    assert dose.infusion_duration_days() == pytest.approx(2 / 24)


def test_a_dose_per_area_needs_a_bsa_parameter_of_area(tmp_path):
    with pytest.raises(mechsim.RegimenError, match="no parameter BSA \\(body surface area\\)"):
        simulate("one_compartment", "56 mg/m2 iv", until="1 day")
    path = tmp_path / "bad.toml"
    path.write_text(BSA_MODEL.replace('"1.8 m2"', '"1.8 m"'))
    with pytest.raises(UnitError, match="BSA is the body surface area and must be an area "
                                        "\\(e.g. '1.9 m2'\\), got unit meter"):
        simulate(path, "56 mg/m2 iv", until="1 day")
