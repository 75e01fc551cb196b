"""Population (FOCEI) estimation: the objective and covariance step against NONMEM's on the
phenobarbital data, recovery of known values from simulated data, the population file's
[fixed] and [error] tables, the fitted population simulated at once, the command line.

NONMEM's reference (NONMEM 7, $ESTIMATION METHOD=1 INTERACTION, $COVARIANCE; the
pheno_real run in pharmpy's test data, tests/testdata/nonmem/cdd/pheno_real.ext, read by
hand): THETA 0.00469555, 0.984258, 0.15892; OMEGA 0.0293508, 0.027906; SIGMA 0.013241;
OFV 586.27605628188053; standard errors 2.10036e-4, 2.68952e-2, 8.37623e-2 (THETA),
1.34153e-2, 7.47651e-3 (OMEGA), 2.27940e-3 (SIGMA).
"""

import dataclasses
import math

import numpy as np
import pytest

import mechsim
from mechsim import ParseError, ValidationError
from mechsim.cli import main
from mechsim.estimation.population_fit import fit_population
from mechsim.io.population_file import load_population

UNITS = {"TIME": "h", "AMT": "mg", "DV": "mg/L", "WGT": "kg"}
NONMEM_OFV = 586.27605628188053
NONMEM = {"CL_per_kg": (0.00469555, 2.10036e-4), "V_per_kg": (0.984258, 2.68952e-2),
          "V_apgar_low": (0.15892, 8.37623e-2), "omega2(CL_per_kg)": (0.0293508, 1.34153e-2),
          "omega2(V_per_kg)": (0.027906, 7.47651e-3)}
SIGMA, SIGMA_SE = 0.013241, 2.27940e-3


@pytest.fixture(scope="module")
def pheno():
    return mechsim.read_dataset("pheno", units=UNITS, route="iv", observe="C")


def nonmem_population(tmp_path):
    path = tmp_path / "nonmem.toml"
    path.write_text(f"""
[meta]
model = "phenobarbital"
[variability]
CL_per_kg = {{ distribution = "lognormal", median = "0.00469555 L/h/kg", omega = {math.sqrt(0.0293508)!r} }}
V_per_kg = {{ distribution = "lognormal", median = "0.984258 L/kg", omega = {math.sqrt(0.027906)!r} }}
[fixed]
V_apgar_low = {{ value = "0.15892", scale = "linear" }}
[error]
C = {{ model = "proportional", proportional = "{math.sqrt(SIGMA)!r}" }}
""")
    return path


def test_the_objective_and_standard_errors_at_nonmems_estimates_are_nonmems(pheno, tmp_path):
    # MAXEVAL=0: the FOCEI objective at NONMEM's final estimates, and the covariance step
    res = fit_population("phenobarbital", pheno, nonmem_population(tmp_path),
                         max_iterations=0, rtol=1e-10)
    assert res.ofv == pytest.approx(NONMEM_OFV, abs=1e-4)
    assert res.minus2ll == pytest.approx(NONMEM_OFV + 155 * math.log(2 * math.pi), abs=1e-4)
    for name, (_, se) in NONMEM.items():
        assert res.standard_errors[name].magnitude == pytest.approx(se, rel=0.01), name
    b = res.estimates["C.proportional"].magnitude
    se_sigma = 2 * b * res.standard_errors["C.proportional"].magnitude  # d(b^2) = 2b db
    assert se_sigma == pytest.approx(SIGMA_SE, rel=0.01)


def test_focei_from_the_shipped_starts_finds_nonmems_estimates(pheno):
    res = mechsim.fit("phenobarbital", pheno, population="phenobarbital_population")
    assert res.success
    assert res.ofv == pytest.approx(NONMEM_OFV, abs=1e-3)
    for name, (value, se) in NONMEM.items():
        assert res.estimates[name].magnitude == pytest.approx(value, rel=2e-3), name
        assert res.standard_errors[name].magnitude == pytest.approx(se, rel=0.02), name
    b = res.estimates["C.proportional"].magnitude
    assert b * b == pytest.approx(SIGMA, rel=2e-3)


def test_far_starting_variances_still_reach_nonmems_optimum(pheno, tmp_path):
    # CVs of 3 % where the data say 17 %: the optimiser's first steps multiply omega^2 by
    # tens, and the etas predicted from the last evaluation for such a step would be far
    # off (a review found one at 561, which crashed the compiled run)
    path = tmp_path / "narrow.toml"
    path.write_text("""
[meta]
model = "phenobarbital"
[variability]
CL_per_kg = { distribution = "lognormal", cv = "3 %" }
V_per_kg = { distribution = "lognormal", cv = "3 %" }
[fixed]
V_apgar_low = { value = "0.1", scale = "linear" }
[error]
C = { model = "proportional", proportional = "0.1" }
""")
    res = mechsim.fit("phenobarbital", pheno, population=path, workers=1)
    assert res.success
    assert res.ofv == pytest.approx(NONMEM_OFV, abs=1e-3)


def simulated_population(n_subjects, seed, cl, v, omega_cl, omega_v, b):
    """One-compartment data (two doses, eight samples) with log-normal CL and V and a
    proportional error, from the closed form."""
    from mechsim.dataset import Dataset, Subject

    rng = np.random.default_rng(seed)
    times = np.array([0.1, 0.5, 1.0, 2.0, 3.0, 4.5, 6.0, 8.0])
    subjects = []
    for i in range(n_subjects):
        cl_i = cl * math.exp(omega_cl * rng.standard_normal())
        v_i = v * math.exp(omega_v * rng.standard_normal())
        k = cl_i / v_i
        c = sum(1000 / v_i * np.exp(-k * (times - d)) * (times >= d) for d in (0.0, 3.0))
        y = c * (1 + b * rng.standard_normal(times.size))
        subjects.append(Subject(
            id=str(i + 1), regimen=mechsim.Regimen.parse("1000 nmol iv every 3 days x 2"),
            times=mechsim.Quantity(times, "day"), values=y, outputs=("C",) * times.size,
            before_dose=np.zeros(times.size, bool), covariates={}, lines=()))
    return Dataset(subjects=tuple(subjects), value_units={"C": mechsim.ureg.Unit("nM")},
                   time_unit=mechsim.ureg.day)


def test_known_population_values_are_recovered_within_their_standard_errors(tmp_path):
    # 40 subjects: CL 7 L/day (omega 0.3), V 12 L (omega 0.2), 10 % proportional error;
    # every estimate within 3 standard errors of the truth (a fixed seed: deterministic)
    data = simulated_population(40, 7, cl=7.0, v=12.0, omega_cl=0.3, omega_v=0.2, b=0.1)
    path = tmp_path / "pop.toml"
    path.write_text("""
[variability]
CL = { distribution = "lognormal", median = "5 L/day", cv = "50 %" }
V = { distribution = "lognormal", median = "10 L", cv = "50 %" }
[error]
C = { model = "proportional", proportional = "0.2" }
""")
    res = mechsim.fit("one_compartment", data, population=path)
    truth = {"CL": 7.0, "V": 12.0, "omega2(CL)": 0.09, "omega2(V)": 0.04,
             "C.proportional": 0.1}
    for name, value in truth.items():
        est, se = res.estimates[name], res.standard_errors[name]
        if name in ("CL", "V"):
            est, se = est.to("L/day" if name == "CL" else "L"), se.to(est.units)
        assert abs(est.magnitude - value) < 3 * se.magnitude, (name, est, se)
    assert res.shrinkage.min() >= 0 and res.shrinkage.max() < 0.5


def test_the_fitted_population_is_a_population_file_that_simulates(pheno, tmp_path):
    res = fit_population("phenobarbital", pheno, nonmem_population(tmp_path),
                         max_iterations=0, covariance=False)
    path = res.to_population(tmp_path / "fitted.toml")
    pop = load_population(path)
    assert {d.name for d in pop.variability} == {"CL_per_kg", "V_per_kg"}
    assert [f.name for f in pop.fixed] == ["V_apgar_low"] and pop.fixed[0].scale == "linear"
    assert pop.errors[0][:2] == ("C", "proportional")
    model = mechsim.load_model("phenobarbital")
    people = pop.sample(model, 2000, seed=3).quantities()
    cl = people["CL_per_kg"].to("L/h/kg").magnitude
    assert np.median(cl) == pytest.approx(0.00469555, rel=0.03)
    assert np.std(np.log(cl)) == pytest.approx(math.sqrt(0.0293508), rel=0.06)
    assert np.all(people["V_apgar_low"].magnitude == pytest.approx(0.15892))
    # a VPC takes it as it is: the variability, the fixed effect and the residual error
    from mechsim.estimation.vpc import vpc

    check = vpc("phenobarbital", pheno, population=str(path), n=20, seed=1)
    assert check.replicates == 20
    # and a refit starts from it and stays there
    again = fit_population("phenobarbital", pheno, path, max_iterations=0, covariance=False)
    assert again.ofv == pytest.approx(NONMEM_OFV, abs=1e-3)


def test_diagnostics_per_observation(pheno, tmp_path):
    res = fit_population("phenobarbital", pheno, nonmem_population(tmp_path),
                         max_iterations=0, covariance=False)
    t = res.table
    assert len(t["id"]) == len(t["cwres"]) == 155
    # IPRED and PRED of infant 1, by a plain simulation with its own parameter values
    # (the EBEs applied to NONMEM's typical values; infant 1: 1.4 kg, Apgar 7)
    subject = pheno.subjects[0]
    hours = subject.times.to("h").magnitude
    for key, eta in (("ipred", res.etas[0]), ("pred", (0.0, 0.0))):
        sim = mechsim.simulate(
            "phenobarbital", subject.regimen, until=f"{hours.max() + 1} h",
            times=mechsim.Quantity(hours, "h"), rtol=1e-10,
            overrides={"CL_per_kg": f"{0.00469555 * math.exp(eta[0])} L/h/kg",
                       "V_per_kg": f"{0.984258 * math.exp(eta[1])} L/kg", "WGT": "1.4 kg",
                       "APGR": "7", "V_apgar_low": "0.15892"})
        np.testing.assert_allclose(t[key][np.array(t["id"]) == subject.id],
                                   sim["C"].to("mg/L").magnitude, rtol=1e-6)
    # CWRES of a good model: mean near 0, sd near 1
    assert abs(np.mean(t["cwres"])) < 0.3 and 0.7 < np.std(t["cwres"]) < 1.3
    files = res.write_tables(tmp_path)
    assert [f.name for f in files] == ["estimates.csv", "etas.csv", "predictions.csv"]
    assert files[1].read_text().splitlines()[0] == "ID,ETA(CL_per_kg),ETA(V_per_kg)"


POP_BAD = [
    ('[variability]\nCL = { distribution = "lognormal", cv = 0.3 }\n'
     '[fixed]\nV = { value = "1 L", scale = "cubic" }', "scale must be 'log' or 'linear'"),
    ('[variability]\nCL = { distribution = "lognormal", cv = 0.3 }\n'
     '[fixed]\nV = { start = "1 L" }', "unknown key 'start'"),
    ('[variability]\nCL = { distribution = "lognormal", cv = 0.3 }\n'
     '[error]\nC = { model = "proportional" }', "needs proportional"),
]


@pytest.mark.parametrize("text, message", POP_BAD)
def test_bad_population_tables_are_refused_with_their_line(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ParseError, match=message) as info:
        load_population(path)
    assert "bad.toml" in str(info.value)


def test_what_a_population_fit_cannot_take(pheno, tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[variability]\nCL_per_kg = { distribution = "normal", cv = 0.3, '
                    'mean = "0.005 L/h/kg" }\n')
    with pytest.raises(ValidationError, match="log-normal variability only"):
        mechsim.fit("phenobarbital", pheno, population=path)
    path.write_text('[variability]\nCL_per_kg = { distribution = "lognormal", cv = 0.3 }\n'
                    '[covariates.WGT]\ndistribution = "lognormal"\nmedian = "1 kg"\ncv = 0.2\n')
    with pytest.raises(ValidationError, match="covariates from the dataset"):
        mechsim.fit("phenobarbital", pheno, population=path)
    path.write_text('[variability]\nCL_per_kg = { distribution = "lognormal", cv = 0.3 }\n'
                    '[fixed]\nV_per_kilo = { value = "1 L/kg" }\n')
    with pytest.raises(ValidationError, match="unknown parameter 'V_per_kilo'"):
        mechsim.fit("phenobarbital", pheno, population=path)


@pytest.mark.slow
def test_the_command_line_fits_a_population(tmp_path, capsys):
    out = tmp_path / "fit"
    code = main(["fit", "phenobarbital", "pheno", "--units", "TIME=h,AMT=mg,DV=mg/L,WGT=kg",
                 "--observe", "C", "--population", "phenobarbital_population",
                 "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "FOCEI" in text and "OFV 586.27" in text
    names = sorted(p.name for p in out.iterdir())
    assert names == ["cwres.png", "estimates.csv", "eta_covariates.png", "etas.csv",
                     "etas.png", "fitted_population.toml", "goodness_of_fit.png",
                     "npde.csv", "npde.png", "predictions.csv", "vpc.png"]
    first = (out / "npde.csv").read_text().splitlines()[0]
    assert first.startswith("# NPDE of C (155 observations, 500 replicates)")
    assert main(["vpc", "phenobarbital", "pheno", "--units", "TIME=h,AMT=mg,DV=mg/L,WGT=kg",
                 "--observe", "C", "--population", str(out / "fitted_population.toml"),
                 "--n", "20", "--out", str(tmp_path / "vpc.png")]) == 0


@pytest.mark.slow
def test_recovery_of_the_anti_cd38_poppk_population_from_simulated_data(tmp_path):
    # 200 patients simulated with the shipped isatuximab popPK model (Fau 2020): between-
    # patient variability on CLinf_ref (CV 47.5 %) and V1_ref (CV 25.7 %), weights from
    # 50 to 110 kg, 10 mg/kg weekly x 4 then every two weeks, six samples each, 15 %
    # proportional error.  FOCEI from starts 30 % off must land within 10 % of the true
    # typical values and 30 % of the true variances (the criterion).
    from mechsim.dataset import Dataset, Subject

    n, seed = 200, 2020
    rng = np.random.default_rng(seed)
    omega2 = {"CLinf_ref": math.log1p(0.475 ** 2), "V1_ref": math.log1p(0.257 ** 2)}
    truth = {"CLinf_ref": 0.00955, "V1_ref": 4.47, "V2_ref": 3.62}
    weights = rng.uniform(50, 110, n)
    cl = truth["CLinf_ref"] * np.exp(math.sqrt(omega2["CLinf_ref"]) * rng.standard_normal(n))
    v1 = truth["V1_ref"] * np.exp(math.sqrt(omega2["V1_ref"]) * rng.standard_normal(n))
    regimen = "10 mg/kg iv over 1 h every 7 days x 4 then every 14 days x 2"
    days = np.array([0.1, 6.95, 7.1, 20.95, 27.95, 55.0])
    batch = mechsim.simulate_many(
        "isatuximab_poppk", regimen, until="57 day", times=mechsim.Quantity(days, "day"),
        parameters={"CLinf_ref": mechsim.Quantity(cl, "L/h"),
                    "V1_ref": mechsim.Quantity(v1, "L"), "WT": mechsim.Quantity(weights, "kg")})
    c = batch["C"].to("mg/L").magnitude
    y = c * (1 + 0.15 * rng.standard_normal(c.shape))
    subjects = tuple(Subject(
        id=str(i + 1), regimen=mechsim.Regimen.parse(regimen),
        times=mechsim.Quantity(days, "day"), values=y[i], outputs=("C",) * days.size,
        before_dose=np.zeros(days.size, bool), covariates={"WT": mechsim.Quantity(
            weights[i], "kg")}, lines=()) for i in range(n))
    data = Dataset(subjects=subjects, value_units={"C": mechsim.ureg.Unit("mg/L")},
                   time_unit=mechsim.ureg.day, covariate_names=("WT",))
    path = tmp_path / "start.toml"
    path.write_text("""
[variability]
CLinf_ref = { distribution = "lognormal", median = "0.0124 L/h", cv = "30 %" }
V1_ref = { distribution = "lognormal", median = "3.2 L", cv = "40 %" }
[fixed]
V2_ref = { value = "4.7 L" }
[error]
C = { model = "proportional", proportional = "0.25" }
""")
    res = mechsim.fit("isatuximab_poppk", data, population=path)
    assert res.success
    units = {"CLinf_ref": "L/h", "V1_ref": "L", "V2_ref": "L"}
    for name, value in truth.items():
        assert res.estimates[name].to(units[name]).magnitude == pytest.approx(value, rel=0.10)
    for name, value in omega2.items():
        assert res.estimates[f"omega2({name})"].magnitude == pytest.approx(value, rel=0.30)
    assert res.estimates["C.proportional"].magnitude == pytest.approx(0.15, rel=0.10)


class _Level(int):
    def at_least(self, other) -> bool:
        return self >= other


class _Therapeutic:
    """Toy endpoints on the phenobarbital concentration, written against the trial's
    Endpoints interface: response = a peak of at least 20 mg/L; 'progression' = the level
    below 10 mg/L after the first day."""

    name = "therapeutic"
    rates = (("peak >= 20 mg/L", "peak", _Level(1)),)
    marker = "C"
    unit = "mg/L"

    def progression_times(self, t, values):
        low = (values < 10) & (t[None, :] > 1)
        return np.where(low.any(axis=1), t[low.argmax(axis=1)], np.inf)

    def best_response(self, t, values, until):
        return np.where(t[None, :] <= until[:, None], values, -np.inf).max(axis=1)

    def category(self, response):
        return _Level(response >= 20)


def test_a_fitted_population_runs_a_virtual_trial(pheno, tmp_path):
    from mechsim.trial import Trial, TrialArm, run_trial

    res = fit_population("phenobarbital", pheno, nonmem_population(tmp_path),
                         max_iterations=0, covariance=False)
    population = load_population(res.to_population(tmp_path / "fitted.toml"))
    trial = Trial(model="phenobarbital", population=population,
                  arms=(TrialArm("high", "30 mg load", mechsim.Regimen.parse("30 mg iv"), 40),
                        TrialArm("low", "15 mg load", mechsim.Regimen.parse("15 mg iv"), 40)),
                  follow_up="20 day", assess_every="2 h", endpoints=_Therapeutic(),
                  control="low")
    result = run_trial(trial, workers=1)
    rows = {(r["arm"], r["endpoint"]): r for r in result.summary()}
    high = float(rows[("30 mg load", "peak >= 20 mg/L")]["simulated"])
    low = float(rows[("15 mg load", "peak >= 20 mg/L")]["simulated"])
    # a 30 mg load into about 1.3 L (V = 0.98 L/kg x 1.3 kg) peaks near 23 mg/L, 15 mg
    # near 12 mg/L: most of the high arm and none of the low reach 20 mg/L; the level
    # falls below 10 mg/L later in the high arm (half-life about 6 days)
    assert high > 0.5 and low == 0.0
    assert result.hazard_ratio("high").value < 0.5


def test_a_block_omega_from_the_correlations_of_the_file(pheno, tmp_path):
    # a correlation of 0 between the two etas leaves NONMEM's objective as it is; the
    # covariance step then estimates its standard error, and the fitted file keeps it
    path = nonmem_population(tmp_path)
    path.write_text(path.read_text() + '\n[[correlations]]\nbetween = ["CL_per_kg", '
                    '"V_per_kg"]\nvalue = 0.0\n')
    res = fit_population("phenobarbital", pheno, path, max_iterations=0, covariance=False)
    assert res.ofv == pytest.approx(NONMEM_OFV, abs=1e-4)
    assert "corr(CL_per_kg,V_per_kg)" in res.names
    path.write_text(path.read_text().replace("value = 0.0", "value = 0.5"))
    moved = fit_population("phenobarbital", pheno, path, max_iterations=0, covariance=False)
    assert math.isfinite(moved.ofv) and moved.ofv != pytest.approx(res.ofv, abs=0.1)
    assert np.corrcoef(moved.etas.T)[0, 1] > np.corrcoef(res.etas.T)[0, 1]  # EBEs follow
    back = load_population(moved.to_population(tmp_path / "fitted.toml"))
    assert back.correlations == (("CL_per_kg", "V_per_kg", pytest.approx(0.5)),)


def test_a_correlation_between_random_effects_is_recovered(tmp_path):
    from mechsim.dataset import Dataset, Subject

    rng = np.random.default_rng(11)
    times = np.array([0.1, 0.5, 1.0, 2.0, 3.0, 4.5, 6.0, 8.0])
    subjects = []
    z = rng.multivariate_normal([0, 0], [[0.09, 0.6 * 0.3 * 0.25], [0.6 * 0.3 * 0.25, 0.0625]],
                                size=60)
    for i, (e_cl, e_v) in enumerate(z):
        cl, v = 7.0 * math.exp(e_cl), 12.0 * math.exp(e_v)
        c = sum(1000 / v * np.exp(-cl / v * (times - d)) * (times >= d) for d in (0.0, 3.0))
        subjects.append(Subject(
            id=str(i + 1), regimen=mechsim.Regimen.parse("1000 nmol iv every 3 days x 2"),
            times=mechsim.Quantity(times, "day"),
            values=c * (1 + 0.1 * rng.standard_normal(times.size)),
            outputs=("C",) * times.size, before_dose=np.zeros(times.size, bool),
            covariates={}, lines=()))
    data = Dataset(subjects=tuple(subjects), value_units={"C": mechsim.ureg.Unit("nM")},
                   time_unit=mechsim.ureg.day)
    path = tmp_path / "pop.toml"
    path.write_text("""
[variability]
CL = { distribution = "lognormal", median = "5 L/day", cv = "40 %" }
V = { distribution = "lognormal", median = "10 L", cv = "40 %" }
[[correlations]]
between = ["CL", "V"]
value = 0.1
[error]
C = { model = "proportional", proportional = "0.2" }
""")
    res = mechsim.fit("one_compartment", data, population=path)
    est = res.estimates["corr(CL,V)"].magnitude
    se = res.standard_errors["corr(CL,V)"].magnitude
    assert abs(est - 0.6) < 3 * se and 0 < se < 0.3


def weight_and_sex_data(n_subjects, seed, drawn=None, mass_too=False, single=(),
                        times=(0.1, 0.5, 1.0, 2.0, 3.0, 4.5, 6.0, 8.0)):
    """One-compartment data whose CL follows (WT/70 kg)**0.75 and whose V is 0.8 times
    as large in level F of the covariate SEX, with log-normal variability (0.2, 0.15);
    ``drawn`` (a list) receives each subject's (WT, SEX, CL, V).  ``mass_too``: every
    other observation is of C_mass (mg/L) instead of C (nM); the subjects in ``single``
    have one observation (the third sampling time) only."""
    from mechsim.dataset import Dataset, Subject

    rng = np.random.default_rng(seed)
    times = np.asarray(times, dtype=float)
    subjects = []
    for i in range(n_subjects):
        wt, sex = rng.uniform(30, 120), ("F" if i % 2 else "M")
        cl = 7.0 * (wt / 70) ** 0.75 * math.exp(0.2 * rng.standard_normal())
        v = 12.0 * (0.8 if sex == "F" else 1.0) * math.exp(0.15 * rng.standard_normal())
        if drawn is not None:
            drawn.append((wt, sex, cl, v))
        t = times[2:3] if i in single else times
        c = sum(1000 / v * np.exp(-cl / v * (t - d)) * (t >= d) for d in (0.0, 3.0))
        outputs = tuple("C_mass" if mass_too and j % 2 else "C" for j in range(t.size))
        scale = np.array([0.15 if o == "C_mass" else 1.0 for o in outputs])  # nM -> mg/L
        subjects.append(Subject(
            id=str(i + 1), regimen=mechsim.Regimen.parse("1000 nmol iv every 3 days x 2"),
            times=mechsim.Quantity(t, "day"),
            values=c * scale * (1 + 0.1 * rng.standard_normal(t.size)),
            outputs=outputs, before_dose=np.zeros(t.size, bool),
            covariates={"WT": mechsim.Quantity(wt, "kg"), "SEX": sex}, lines=()))
    units = {"C": mechsim.ureg.Unit("nM")}
    if mass_too:
        units["C_mass"] = mechsim.ureg.Unit("mg/L")
    return Dataset(subjects=tuple(subjects), value_units=units,
                   time_unit=mechsim.ureg.day, covariate_names=("WT", "SEX"))


EFFECTS_POPULATION = """
[variability]
CL = {{ distribution = "lognormal", median = "6 L/day", cv = "30 %" }}
V = {{ distribution = "lognormal", median = "11 L", cv = "30 %" }}
[[effects]]
covariate = "WT"
parameter = "CL"
power = {power}
reference = "70 kg"
estimate = {estimate}
[[effects]]
covariate = "SEX"
level = "F"
parameter = "V"
multiply = {multiply}
estimate = {estimate}
[error]
C = {{ model = "proportional", proportional = "0.15" }}
"""


def test_covariate_effects_from_the_file_act_on_each_subject(tmp_path):
    data = weight_and_sex_data(12, 3)
    path = tmp_path / "pop.toml"
    plain = tmp_path / "plain.toml"
    path.write_text(EFFECTS_POPULATION.format(power=0.0, multiply=1.0, estimate="false"))
    plain.write_text(EFFECTS_POPULATION.format(power=0.0, multiply=1.0, estimate="false")
                     .split("[[effects]]")[0] + '[error]\nC = { model = "proportional", '
                     'proportional = "0.15" }\n')
    # effects of size 0 and 1 change nothing
    a = fit_population("one_compartment", data, path, max_iterations=0, covariance=False)
    b = fit_population("one_compartment", data, plain, max_iterations=0, covariance=False)
    assert a.ofv == pytest.approx(b.ofv, abs=1e-8)
    # the true effects fit these data better than none
    path.write_text(EFFECTS_POPULATION.format(power=0.75, multiply=0.8, estimate="false"))
    c = fit_population("one_compartment", data, path, max_iterations=0, covariance=False)
    assert c.ofv < a.ofv - 5
    back = load_population(c.to_population(tmp_path / "fitted.toml"))
    assert [(e.covariate, e.kind, e.value) for e in back.effects] == [
        ("WT", "power", 0.75), ("SEX", "multiply", 0.8)]


LINEAR_POPULATION = """
[variability]
CL = {{ distribution = "lognormal", median = "6 L/day", cv = "30 %" }}
V = {{ distribution = "lognormal", median = "11 L", cv = "30 %" }}
[[effects]]
covariate = "WT"
parameter = "CL"
linear = "{slope}"
reference = "70 kg"
estimate = {estimate}
[error]
C = {{ model = "proportional", proportional = "0.15" }}
"""


def test_a_linear_covariate_effect_scales_each_subjects_typical_value(tmp_path):
    """CL_i = CL * (1 + slope * (WT_i - 70 kg)): the population predictions (eta = 0) are
    the closed-form one-compartment curves with each subject's CL; a slope given per gram
    is the same effect."""
    data = weight_and_sex_data(6, 4)
    path = tmp_path / "pop.toml"
    path.write_text(LINEAR_POPULATION.format(slope="0.012 1/kg", estimate="false"))
    res = fit_population("one_compartment", data, path, max_iterations=0, covariance=False)
    times = np.array([0.1, 0.5, 1.0, 2.0, 3.0, 4.5, 6.0, 8.0])
    for subject in data.subjects:
        cl = 6.0 * (1 + 0.012 * (subject.covariates["WT"].to("kg").magnitude - 70))
        c = sum(1000 / 11 * np.exp(-cl / 11 * (times - d)) * (times >= d) for d in (0, 3))
        rows = np.array(res.table["id"]) == subject.id
        np.testing.assert_allclose(res.table["pred"][rows], c, rtol=1e-6)
    path.write_text(LINEAR_POPULATION.format(slope="1.2e-5 1/g", estimate="false"))
    same = fit_population("one_compartment", data, path, max_iterations=0, covariance=False)
    assert same.ofv == pytest.approx(res.ofv, rel=1e-12)
    back = load_population(res.to_population(tmp_path / "fitted.toml"))
    assert back.effects[0].kind == "linear"
    assert back.effects[0].value.to("1/kg").magnitude == pytest.approx(0.012)


def test_a_linear_effect_of_a_covariate_in_percent_reads_back_the_same(tmp_path):
    # a dimensionless covariate in %: the slope per unit (1.2) is 0.012 per percent
    data = weight_and_sex_data(6, 4)
    data = dataclasses.replace(data, subjects=tuple(
        dataclasses.replace(s, covariates={"WT": mechsim.Quantity(
            s.covariates["WT"].to("kg").magnitude, "percent")}) for s in data.subjects))
    path = tmp_path / "pop.toml"
    path.write_text(LINEAR_POPULATION.format(slope="1.2", estimate="false")
                    .replace('"70 kg"', '"70 %"'))
    res = fit_population("one_compartment", data, path, max_iterations=0, covariance=False)
    times = np.array([0.1, 0.5, 1.0, 2.0, 3.0, 4.5, 6.0, 8.0])
    first = data.subjects[0]
    cl = 6.0 * (1 + 1.2 * (first.covariates["WT"].to("").magnitude - 0.7))
    c = sum(1000 / 11 * np.exp(-cl / 11 * (times - d)) * (times >= d) for d in (0, 3))
    np.testing.assert_allclose(res.table["pred"][np.array(res.table["id"]) == first.id], c,
                               rtol=1e-6)
    again = fit_population("one_compartment", data,
                           res.to_population(tmp_path / "fitted.toml"), max_iterations=0,
                           covariance=False)
    assert again.ofv == pytest.approx(res.ofv, rel=1e-12)


@pytest.mark.parametrize(("slope", "message"), [
    ("0.01 1/L", "linear (the change per unit of the covariate) must have the dimension of "
                 "1/reference"),
    ("0.05 1/kg", "the linear factor 1 + 0.05 1/kg * (WT - 70 kg) is not positive"),
])
def test_a_linear_effect_with_a_wrong_unit_or_a_negative_factor_is_refused(tmp_path, slope,
                                                                           message):
    path = tmp_path / "pop.toml"
    path.write_text('[covariates]\nWT = { distribution = "uniform", lower = "30 kg", '
                    'upper = "120 kg" }\n[[effects]]\ncovariate = "WT"\nparameter = "CL"\n'
                    f'linear = "{slope}"\nreference = "70 kg"\n')
    with pytest.raises(mechsim.errors.MechsimError) as info:
        load_population(path).sample(mechsim.load_model("one_compartment"), 200, seed=1)
    assert message in str(info.value) and "pop.toml" in str(info.value)


def test_a_linear_covariate_effect_is_estimated(tmp_path):
    # the data's CL follows (WT/70)**0.75; over 30-120 kg its least-squares line through
    # ln CL has slope about 0.75/70 per kg near 70 kg: the estimate must be near the slope
    # of the realised values (regression of CL/typical on WT - 70)
    drawn = []
    data = weight_and_sex_data(40, 5, drawn)
    wt, _, cl, _ = (np.array(column) for column in zip(*drawn))
    path = tmp_path / "pop.toml"
    path.write_text(LINEAR_POPULATION.format(slope="0 1/kg", estimate="true"))
    res = mechsim.fit("one_compartment", data, population=path)
    est = res.estimates["WT_linear_CL"].to("1/kg").magnitude
    typical = res.estimates["CL"].to("L/day").magnitude
    realised = np.polyfit(wt - 70, cl / typical, 1)[0]
    assert abs(est - realised) < 0.003, (est, realised)
    assert res.standard_errors["WT_linear_CL"].to("1/kg").magnitude < 0.003


def test_covariate_effects_are_estimated(tmp_path):
    # 40 subjects, 8 samples each: every subject's CL and V are well determined, so the
    # estimated effects must match those of the values actually drawn (the regression
    # slope of ln CL on ln(WT/70) and the ratio of geometric mean V, F over M), whatever
    # the sample did to the population values (0.75 and 0.8)
    drawn = []
    data = weight_and_sex_data(40, 5, drawn)
    wt, sex, cl, v = (np.array(column) for column in zip(*drawn))
    slope = np.polyfit(np.log(wt / 70), np.log(cl), 1)[0]
    ratio = math.exp(np.mean(np.log(v[sex == "F"])) - np.mean(np.log(v[sex == "M"])))
    path = tmp_path / "pop.toml"
    path.write_text(EFFECTS_POPULATION.format(power=0.3, multiply=1.0, estimate="true"))
    res = mechsim.fit("one_compartment", data, population=path)
    for name, realised in (("WT_power_CL", slope), ("SEX_F_on_V", ratio)):
        est, se = res.estimates[name].magnitude, res.standard_errors[name].magnitude
        assert abs(est - realised) < 0.05 and se < 0.1, (name, est, realised, se)


def test_the_same_fit_on_one_process_on_workers_and_on_a_dask_cluster(pheno, tmp_path):
    # the objective, the EBEs and the solve count do not depend on where subjects run
    distributed = pytest.importorskip("distributed")
    path = nonmem_population(tmp_path)
    here = fit_population("phenobarbital", pheno, path, max_iterations=0, covariance=False,
                          workers=1)
    pool = fit_population("phenobarbital", pheno, path, max_iterations=0, covariance=False,
                          workers=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        dask = fit_population("phenobarbital", pheno, path, max_iterations=0,
                              covariance=False, executor=client)
    # a plain pool pickles the problem with each chunk (Dask scatters it once, with
    # cloudpickle): the model's generated functions, made by the fits above in this
    # process, must not travel
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(2) as executor:
        plain = fit_population("phenobarbital", pheno, path, max_iterations=0,
                               covariance=False, executor=executor)
    for other in (pool, dask, plain):
        assert other.ofv == here.ofv
        np.testing.assert_array_equal(other.etas, here.etas)
        assert other.solves == here.solves


def test_population_inputs_a_fit_cannot_take_are_refused_first(pheno, tmp_path):
    from dataclasses import replace

    path = nonmem_population(tmp_path)
    one = replace(pheno, subjects=pheno.subjects[:1])
    with pytest.raises(ValidationError, match="at least two subjects"):
        fit_population("phenobarbital", one, path, max_iterations=0)
    with pytest.raises(ValidationError, match="estimated by the population file already"):
        fit_population("phenobarbital", pheno, path, estimate=["CL_per_kg"])
    # a level written as text matches a numeric column by value; an unknown level is refused
    text = path.read_text()
    path.write_text(text + '\n[[effects]]\ncovariate = "APGR"\nlevel = "7"\n'
                    'parameter = "CL_per_kg"\nmultiply = 2.0\n')
    with_level = fit_population("phenobarbital", pheno, path, max_iterations=0,
                                covariance=False)
    assert with_level.ofv > NONMEM_OFV + 1  # doubling CL of the Apgar-7 infants fits worse
    path.write_text(text + '\n[[effects]]\ncovariate = "APGR"\nlevel = "11"\n'
                    'parameter = "CL_per_kg"\nmultiply = 2.0\n')
    with pytest.raises(ValidationError, match="no subject has level '11'"):
        fit_population("phenobarbital", pheno, path, max_iterations=0)
    # a start no run can take (V = 0 for the infants with a low Apgar score)
    path.write_text(text.replace('value = "0.15892"', 'value = "-1"'))
    with pytest.raises(ValidationError, match="starting values: subject"):
        fit_population("phenobarbital", pheno, path)


def test_a_power_effect_on_a_text_column_is_refused(tmp_path):
    data = weight_and_sex_data(6, 1)
    path = tmp_path / "pop.toml"
    path.write_text(EFFECTS_POPULATION.format(power=0.75, multiply=0.8, estimate="false")
                    .replace('covariate = "WT"', 'covariate = "SEX"'))
    with pytest.raises(ValidationError, match="power effect needs numbers"):
        fit_population("one_compartment", data, path, max_iterations=0)


def test_method_focei_names_the_estimation_method(tmp_path):
    """fit(..., population=FILE, method="FOCEI") is the population fit with the solver
    chosen as by default; without a population FOCEI is refused with the reason."""
    data = weight_and_sex_data(6, 4)
    path = tmp_path / "pop.toml"
    path.write_text(LINEAR_POPULATION.format(slope="0.012 1/kg", estimate="false"))
    named = mechsim.fit("one_compartment", data, population=path, method="FOCEI")
    default = mechsim.fit("one_compartment", data, population=path)
    assert named.method == "FOCEI" and named.ofv == default.ofv
    with pytest.raises(ValidationError, match="method 'FOCEI' estimates a population"):
        mechsim.fit("one_compartment", data, estimate=["CL"], method="FOCEI")
