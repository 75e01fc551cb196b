"""Exact gradients (forward sensitivity equations) against finite differences, on every
shipped model: boluses, infusions, oral and SC depots, bioavailability, body weight and
molecular weight in the dose, observables that depend on parameters."""

from pathlib import Path

import numpy as np
import pytest

import mechsim
from mechsim.dataset import Dataset, Subject
from mechsim.estimation.problem import FitProblem
from mechsim.runspec import RunSpec

Q = mechsim.Quantity

CASES = {
    "one_compartment": ("1000 nmol iv every 2 days x 2; 500 nmol oral over 6 h at 1 day",
                        ["C", "C_mass"], ["V", "CL", "ka", "F", "MW"], {"F": "0.8"}),
    "phenobarbital": ("25 mg iv; 3.5 mg iv every 12 h x 6", ["C"],
                      ["CL_per_kg", "V_per_kg", "WGT"], {}),
    "isatuximab_poppk": ("10 mg/kg iv over 1 h every 7 days x 3", ["C"],
                         ["CLinf_ref", "V1_ref", "Q_ref", "Vm", "Km", "WT", "e_V1"],
                         {"WT": "60 kg"}),  # away from WT_ref, where (WT/WT_ref)**e_V1 = 1
    "cd38_myeloma": ("10 mg/kg iv over 1 h every 7 days x 2; 4 mg oral on days 1-21 of "
                     "28-day cycles", ["C_mass", "RO", "M", "NK"],
                     ["CLinf_ref", "KD", "kint", "Q_bm", "k_adcc", "pom_NK_activity", "kel_M", "R0",
                      "WT", "F_pom"], {}),
    "cd40_apc": ("3 mg/kg iv over 2 h; 1 mg/kg sc at 7 day", ["C_mass", "RO", "IL6"],
                 ["CL", "KD_D", "kint_D", "R0", "f_IL6", "ka", "F_sc"], {}),
}
TIMES_DAYS = np.array([0.3, 1.5, 3.2, 6.9, 10.0, 15.5, 21.0])


def problem(model, regimen, outputs, estimate, overrides=None):
    times = np.tile(TIMES_DAYS, len(outputs))
    subject = Subject(id="1", regimen=mechsim.Regimen.parse(regimen),
                      times=Q(times, "day"), values=np.ones(times.size),
                      outputs=tuple(o for o in outputs for _ in TIMES_DAYS),
                      before_dose=np.zeros(times.size, bool), covariates={}, lines=())
    cm = mechsim.compile_model(mechsim.load_model(model))
    names = cm.state_names + cm.observable_names
    units = {o: (cm.state_units + cm.observable_units)[names.index(o)] for o in outputs}
    data = Dataset(subjects=(subject,), value_units=units, time_unit=mechsim.ureg.day)
    # atol 1e-15 of each state's own unit (a cytokine in pg/mL is 1e-9 g/L)
    cm_units = mechsim.compile_model(mechsim.load_model(model)).state_units
    atol = [1e-15 * mechsim.units.to_canonical(Q(1.0, u)) for u in cm_units]
    spec = RunSpec.build(model, until="22 day", rtol=1e-11, atol=atol, overrides=overrides)
    return FitProblem(spec, data, estimate, dict.fromkeys(outputs, "additive"))


@pytest.mark.parametrize("model", list(CASES))
def test_exact_gradients_match_central_differences(model):
    regimen, outputs, estimate, overrides = CASES[model]
    fp = problem(model, regimen, outputs, estimate, overrides)
    cm = fp.spec.compiled
    theta = np.array([fp.spec.parameters[cm.parameter_names.index(n)] for n in estimate])
    log = [True] * len(estimate)
    subject = fp.subjects[0]
    f, df = fp.predict(subject, theta, log)
    # steps of 1e-4 in ln p: truncation ~1e-8, solver error (rtol 1e-11) / h ~1e-7
    h = 1e-4
    for j, name in enumerate(estimate):
        up, down = theta.copy(), theta.copy()
        up[j] *= np.exp(h)
        down[j] *= np.exp(-h)
        fd = (fp.predict(subject, up, log)[0] - fp.predict(subject, down, log)[0]) / (2 * h)
        # 1e-5 relative; the floor is the finite differences' own noise: solver error
        # (rtol 1e-11) of the prediction over the step, about 1e-7 of the value itself
        allowed = 1e-5 * np.abs(fd) + 1e-7 * np.abs(f)
        worst = np.max(np.abs(df[:, j] - fd) / allowed)
        assert worst < 1, (name, worst)
        assert np.any(np.abs(fd) > 1e-9 * np.abs(f).max()) or name in ("F_pom",), name


def test_predictions_equal_the_simulated_outputs():
    regimen, outputs, estimate, _ = CASES["cd40_apc"]
    fp = problem("cd40_apc", regimen, outputs, estimate)
    cm = fp.spec.compiled
    theta = np.array([fp.spec.parameters[cm.parameter_names.index(n)] for n in estimate])
    f, _ = fp.predict(fp.subjects[0], theta, [True] * len(estimate))
    res = mechsim.simulate("cd40_apc", regimen, until="22 day",
                           times=Q(TIMES_DAYS, "day"), rtol=1e-11, atol=1e-16)
    expected = np.concatenate([res[o].magnitude for o in outputs])
    np.testing.assert_allclose(f, expected, rtol=1e-7)


def test_a_parameter_that_moves_a_dose_cannot_be_estimated():
    fp = problem("one_compartment", "100 nmol oral", ["C"], ["tlag"])
    p = fp.spec.parameters[fp.spec.compiled.parameter_names.index("tlag")]
    with pytest.raises(mechsim.ValidationError, match="tlag set the lag time of route oral"):
        fp.predict(fp.subjects[0], np.array([max(p, 0.01)]), [True])


def test_exact_gradients_of_doses_per_body_surface_area(tmp_path):
    # a dose in mg/m2 moves with BSA: its jump carries d ln(amount) / d BSA = 1/BSA
    text = (Path(__file__).resolve().parents[2] / "models" / "one_compartment.toml") \
        .read_text().replace("[compartments]", 'BSA = { value = "1.8 m2", note = "test" }\n\n'
                             "[compartments]")
    path = tmp_path / "bsa.toml"
    path.write_text(text)
    estimate = ["BSA", "CL", "V"]
    fp = problem(str(path), "56 mg/m2 iv over 1 h; 20 mg/m2 iv at 2 day", ["C"], estimate)
    cm = fp.spec.compiled
    theta = np.array([fp.spec.parameters[cm.parameter_names.index(n)] for n in estimate])
    log = [True] * len(estimate)
    f, df = fp.predict(fp.subjects[0], theta, log)
    h = 1e-4
    for j, name in enumerate(estimate):
        up, down = theta.copy(), theta.copy()
        up[j] *= np.exp(h)
        down[j] *= np.exp(-h)
        fd = (fp.predict(fp.subjects[0], up, log)[0]
              - fp.predict(fp.subjects[0], down, log)[0]) / (2 * h)
        worst = np.max(np.abs(df[:, j] - fd) / (1e-5 * np.abs(fd) + 1e-7 * np.abs(f)))
        assert worst < 1, (name, worst)
    # C is proportional to the dose, so d C / d ln BSA = C exactly
    np.testing.assert_allclose(df[:, 0], f, rtol=1e-6)
