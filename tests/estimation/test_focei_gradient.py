"""The exact gradient of the FOCEI objective (mechsim.estimation.focei_gradient) against
central differences of the objective itself, subject by subject: on the phenobarbital data
(proportional error, a parameter on its own scale), and on simulated data with every kind
of covariate effect estimated, a correlation between random effects and a combined error.
Also: the empirical Bayes estimates predicted from the last evaluation (EtaMoves) are
closer to the new ones than the old ones are."""

import math

import numpy as np
import pytest
from test_population_fit import UNITS, weight_and_sex_data

import mechsim
from mechsim.estimation.focei import _Variables
from mechsim.estimation.population_fit import population_problem


def differences(variables, x, h=1e-4):
    """Central differences of each subject's -2 ln L_i, each evaluation starting from the
    etas of x (the inner problems stop at steps below 1e-9 or where the runs' noise keeps
    O_i from falling: the differences are good to ~1e-5)."""
    columns = []
    for j in range(x.size):
        step = np.zeros(x.size)
        step[j] = h
        up = variables.evaluate(x + step).parts
        down = variables.evaluate(x - step).parts
        columns.append((up - down) / (2 * h))
    return np.array(columns).T


def check_gradient(setup, x):
    variables = _Variables(setup.problem, setup.pairs)
    found = variables.evaluate(x, keep=True, gradient=True)
    exact = variables.gradients(x, found)
    numeric = differences(variables, x)
    scale = max(1.0, np.abs(numeric).max())
    np.testing.assert_allclose(exact, numeric, rtol=1e-4, atol=1e-5 * scale)
    np.testing.assert_allclose(exact.sum(axis=0), numeric.sum(axis=0), rtol=1e-4,
                               atol=1e-5 * scale)
    return variables


@pytest.fixture(scope="module")
def pheno_setup():
    data = mechsim.read_dataset("pheno", units=UNITS, route="iv", observe="C")
    return population_problem("phenobarbital", data, "phenobarbital_population", workers=1)


def test_the_gradient_on_the_phenobarbital_data(pheno_setup):
    s = pheno_setup
    variables = _Variables(s.problem, s.pairs)
    x0 = variables.pack(s.theta0, s.omega0, s.errors0, [])
    check_gradient(s, x0)  # the start: etas far from 0 for some infants
    # elsewhere: V_apgar_low (its own scale) negative, larger variances
    check_gradient(s, x0 + np.array([0.1, -0.05, -0.25, 0.4, -0.3, 0.2]))


def test_the_gradient_with_covariate_effects_a_correlation_and_a_combined_error(tmp_path):
    data = weight_and_sex_data(16, 5)
    path = tmp_path / "pop.toml"
    path.write_text("""
[variability]
CL = { distribution = "lognormal", median = "6 L/day", cv = "30 %" }
V = { distribution = "lognormal", median = "11 L", cv = "25 %" }
[[correlations]]
between = ["CL", "V"]
value = 0.3
[[effects]]
covariate = "WT"
parameter = "CL"
power = 0.6
reference = "70 kg"
estimate = true
[[effects]]
covariate = "WT"
parameter = "V"
linear = "0.004 1/kg"
reference = "70 kg"
estimate = true
[[effects]]
covariate = "SEX"
level = "F"
parameter = "V"
multiply = 0.9
estimate = true
[error]
C = { model = "combined", additive = "2 nM", proportional = "0.12" }
""")
    s = population_problem("one_compartment", data, path, workers=1)
    variables = _Variables(s.problem, s.pairs)
    betas = [e.start for e in s.problem.estimated_effects]
    assert len(betas) == 3 and s.pairs == ((0, 1),)
    x0 = variables.pack(s.theta0, s.omega0, s.errors0, betas)
    check_gradient(s, x0)
    rng = np.random.default_rng(3)
    check_gradient(s, x0 + 0.1 * rng.standard_normal(x0.size))


def test_the_etas_predicted_from_the_last_evaluation_are_closer(pheno_setup):
    s = pheno_setup
    variables = _Variables(s.problem, s.pairs)
    x0 = variables.pack(s.theta0, s.omega0, s.errors0, [])
    at_x0 = variables.evaluate(x0, keep=True, gradient=True).etas
    moves = s.problem._moves
    step = np.array([0.02, -0.01, 0.01, 0.05, -0.04, 0.02])
    theta, omega, errors, betas = variables.unpack(x0 + step)
    new = variables.evaluate(x0 + step).etas
    typical = s.problem.typical(theta, betas)
    u = s.problem.scale.to_x(typical)
    predicted, _ = moves.predict(u, np.log([errors[n] for n in s.problem.error_names]),
                                 omega)
    old_error = np.abs(at_x0 - new).max()
    assert np.abs(predicted - new).max() < 0.1 * old_error, (old_error,
                                                             np.abs(predicted - new).max())
    assert math.isfinite(old_error) and old_error > 1e-4


@pytest.mark.parametrize("population", ["""
[variability]
CL = { distribution = "lognormal", median = "6 L/day", cv = "30 %" }
[fixed]
V = { value = "11 L", scale = "linear" }
[[effects]]
covariate = "WT"
parameter = "V"
power = 0.5
reference = "70 kg"
estimate = true
[[effects]]
covariate = "SEX"
level = "F"
parameter = "V"
multiply = 0.9
estimate = true
[[effects]]
covariate = "WT"
parameter = "CL"
linear = "0.004 1/kg"
reference = "70 kg"
estimate = true
[error]
C = { model = "additive", additive = "1 nM" }
C_mass = { model = "proportional", proportional = "0.12" }
""", """
[variability]
CL = { distribution = "lognormal", median = "6 L/day", cv = "30 %" }
V = { distribution = "lognormal", median = "11 L", cv = "25 %" }
[[correlations]]
between = ["CL", "V"]
value = -0.4
[[effects]]
covariate = "WT"
parameter = "CL"
power = 0.6
reference = "70 kg"
estimate = true
[[effects]]
covariate = "WT"
parameter = "CL"
linear = "0.002 1/kg"
reference = "70 kg"
estimate = true
[error]
C = { model = "combined", additive = "1 nM", proportional = "0.1" }
C_mass = { model = "additive", additive = "0.05 mg/L" }
"""], ids=["linear-scale V with effects, eta on CL only", "two effects on CL, correlation"])
def test_the_gradient_with_two_outputs_and_single_observation_subjects(tmp_path, population):
    # two error models (each observation's own), effects on a parameter without a random
    # effect and estimated on its own scale, subjects with one observation; in the second
    # case an inner problem stops where its runs' noise keeps O_i from falling, with
    # dO_i/deta not quite 0 (the gradient allows for it)
    path = tmp_path / "pop.toml"
    path.write_text(population)
    data = weight_and_sex_data(10, 5, mass_too=True, single=(0, 3),
                               times=(0.1, 0.5, 1.0, 2.0, 3.0, 4.5, 6.0))
    s = population_problem("one_compartment", data, path, workers=1)
    variables = _Variables(s.problem, s.pairs)
    x0 = variables.pack(s.theta0, s.omega0, s.errors0,
                        [e.start for e in s.problem.estimated_effects])
    check_gradient(s, x0)
    check_gradient(s, x0 + 0.05)
