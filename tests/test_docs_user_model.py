"""A user-written one-compartment model, checked against closed-form PK solutions.

Written from README.md and docs/ only (model-format.md, regimens.md).
"""

import numpy as np
import pytest

import mechsim

MODEL_TOML = """\
# One-compartment PK, linear elimination, IV route (written from docs/model-format.md)

[model]
name = "user_one_cpt"
description = "One-compartment PK with linear elimination and an IV route"
time_unit = "h"

[parameters]
V  = { value = "5 L", note = "assumption: central volume of distribution" }
CL = { value = "0.5 L/h", note = "assumption: linear clearance" }
MW = { value = "50 kg/mol", note = "molecular weight, 50 kDa (kDa only allowed as a literal)" }

[drugs.drug]
molecular_weight = "MW"

[compartments]
central = "V"

[species.C]
compartment = "central"
unit = "nM"
initial = "0 nM"

[species.eliminated]            # accumulator, so drug mass balance is checked
unit = "nmol"

[reactions.elimination]
equation = "C -> eliminated"
rate = "CL*C"                   # nmol/h: a flux

[rules]
C_mass = { expr = "C*MW", unit = "mg/L" }

[routes.iv]
target = "C"
"""

V_L = 5.0
CL_L_PER_H = 0.5
MW_G_PER_MOL = 50e3
K_PER_H = CL_L_PER_H / V_L
RTOL = 1e-6
SOLVER = dict(rtol=1e-11, atol=1e-12)


def mg_to_nmol(dose_mg):
    return dose_mg * 1e-3 / MW_G_PER_MOL * 1e9


def bolus_nM(t_h, dose_mg, t_dose=0.0):
    t_h = np.asarray(t_h, dtype=float)
    dt = t_h - t_dose
    # right-continuous: the value at the dose time includes the dose
    return np.where(dt >= 0, mg_to_nmol(dose_mg) / V_L * np.exp(-K_PER_H * np.clip(dt, 0, None)), 0.0)


def infusion_nM(t_h, dose_mg, T_h):
    t_h = np.asarray(t_h, dtype=float)
    R = mg_to_nmol(dose_mg) / T_h                       # nmol/h
    c_during = R / CL_L_PER_H * (1 - np.exp(-K_PER_H * np.minimum(t_h, T_h)))
    c_end = R / CL_L_PER_H * (1 - np.exp(-K_PER_H * T_h))
    return np.where(t_h <= T_h, c_during, c_end * np.exp(-K_PER_H * (t_h - T_h)))


def max_rel_err(sim, exact):
    sim = np.asarray(sim, dtype=float)
    exact = np.asarray(exact, dtype=float)
    mask = exact > 0
    return float(np.max(np.abs(sim[mask] - exact[mask]) / exact[mask]))


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "user_one_cpt.toml"
    path.write_text(MODEL_TOML)
    return mechsim.load_model(str(path))


def _check(res, exact_nM, label, zero_at_start=False):
    t_h = res.time.to("h").magnitude
    exact = exact_nM(t_h)
    c_nM = res["C"].to("nM").magnitude
    c_mgL = res["C_mass"].to("mg/L").magnitude
    exact_mgL = exact * 1e-9 * MW_G_PER_MOL * 1e3       # nmol/L -> mg/L
    err_nM = max_rel_err(c_nM, exact)
    err_mgL = max_rel_err(c_mgL, exact_mgL)
    print(f"{label}: {len(t_h)} times, max rel err C (nM) {err_nM:.3e}, C_mass (mg/L) {err_mgL:.3e}, "
          f"mass balance {res.diagnostics.max_conservation_residual:.2e}")
    assert err_nM < RTOL, (label, err_nM)
    assert err_mgL < RTOL, (label, err_mgL)
    if zero_at_start:
        assert abs(c_nM[0]) < 1e-9
    assert res.diagnostics.max_conservation_residual < 1e-8
    return err_nM, err_mgL


def test_model_loads_with_notes(model):
    for name in ("V", "CL", "MW"):
        p = model.parameters_by_name[name]
        assert p.note
    assert model.parameters_by_name["V"].value.to("L").magnitude == pytest.approx(5.0)
    assert model.parameters_by_name["CL"].value.to("L/h").magnitude == pytest.approx(0.5)


def test_iv_bolus(model):
    dose = 100.0  # mg -> 2000 nmol -> 400 nM = 20 mg/L at t=0
    res = mechsim.simulate(model, f"{dose:g} mg iv", until="48 h", every="0.5 h", **SOLVER)
    t_h = res.time.to("h").magnitude
    assert t_h[0] == pytest.approx(0.0) and t_h[-1] == pytest.approx(48.0)
    assert res["C_mass"][0].to("mg/L").magnitude == pytest.approx(20.0, rel=1e-12)
    _check(res, lambda t: bolus_nM(t, dose), "IV bolus")


def test_constant_rate_infusion(model):
    dose, T = 100.0, 10.0  # mg over h
    res = mechsim.simulate(model, f"{dose:g} mg iv over {T:g} h", until="48 h", every="0.25 h", **SOLVER)
    _check(res, lambda t: infusion_nM(t, dose, T), "infusion", zero_at_start=True)
    # the same infusion written as a rate
    res2 = mechsim.simulate(model, f"{dose:g} mg iv at {dose / T:g} mg/h", until="48 h", every="0.25 h", **SOLVER)
    _check(res2, lambda t: infusion_nM(t, dose, T), "infusion (at rate)", zero_at_start=True)


def test_repeated_bolus_superposition(model):
    dose, tau, n = 100.0, 12.0, 4
    res = mechsim.simulate(model, f"{dose:g} mg iv every {tau:g} h x {n}", until="72 h", every="0.5 h", **SOLVER)

    def exact(t):
        return sum(bolus_nM(t, dose, t_dose=i * tau) for i in range(n))

    _check(res, exact, "repeated bolus")
    # troughs just before each dose
    times, values = res.before_dose("C")
    tt = times.to("h").magnitude
    np.testing.assert_allclose(tt, [0.0, 12.0, 24.0, 36.0], atol=1e-9)
    trough_exact = [sum(bolus_nM(ti, dose, i * tau) for i in range(k)) for k, ti in enumerate(tt)]
    np.testing.assert_allclose(values.to("nM").magnitude[1:], trough_exact[1:], rtol=RTOL)
    assert values.to("nM").magnitude[0] == pytest.approx(0.0, abs=1e-12)
