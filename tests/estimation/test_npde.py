"""NPDE: the decorrelation and quantiles against their closed form where the simulated
distribution is known, and their calibration: N(0, 1) for data from the model itself,
far from it for data from another model."""

import dataclasses

import numpy as np
import pytest

import mechsim
from mechsim.errors import ValidationError
from mechsim.estimation.npde import npde
from mechsim.estimation.vpc import simulate_design

POPULATION = """
[variability]
CL = { distribution = "lognormal", median = "6 L/day", cv = "30 %" }
V = { distribution = "lognormal", median = "11 L", cv = "20 %" }
[error]
C = { model = "proportional", proportional = "0.1" }
"""


def design_data(n_subjects: int = 12):
    """Subjects with two doses and six observations each (values to be replaced)."""
    from mechsim.dataset import Dataset, Subject

    times = np.array([0.25, 0.5, 1.0, 2.0, 4.0, 6.0])
    subjects = tuple(Subject(
        id=str(i + 1), regimen=mechsim.Regimen.parse("1000 nmol iv every 3 days x 2"),
        times=mechsim.Quantity(times, "day"), values=np.ones(times.size),
        outputs=("C",) * times.size, before_dose=np.zeros(times.size, bool), covariates={},
        lines=()) for i in range(n_subjects))
    return Dataset(subjects=subjects, value_units={"C": mechsim.ureg.Unit("nM")},
                   time_unit=mechsim.ureg.day, covariate_names=())


def with_values(data, values):
    """The dataset with its observations replaced, in order."""
    out, k = [], 0
    for s in data.subjects:
        out.append(dataclasses.replace(s, values=np.asarray(values[k:k + s.values.size])))
        k += s.values.size
    return dataclasses.replace(data, subjects=tuple(out))


def test_without_variability_the_npde_are_the_standardised_residuals():
    # every replicate is f + sigma * e with e iid N(0, 1): decorrelation divides by sigma
    # and the pde is Phi((y - f) / sigma), so npde = (y - f) / sigma (up to Monte Carlo)
    data = design_data(4)
    error = {"C": ("additive", {"additive": mechsim.Quantity(0.5, "nM")})}
    f = simulate_design("one_compartment", data, n=10, error=error).predicted[0]
    z = np.tile([-1.5, -0.5, 0.0, 0.4, 1.0, 1.8], 4)
    result = npde("one_compartment", with_values(data, f + 0.5 * z), n=4000, error=error)
    # Monte Carlo error: about 0.04 at |z| = 1.8 from the pde alone, more for the later
    # observations of a subject, which the empirical Cholesky factor mixes with the first
    np.testing.assert_allclose(result.npde, z, atol=0.2)
    assert np.mean(np.abs(result.npde - z)) < 0.06
    np.testing.assert_allclose(result.predicted, f, rtol=1e-12)


def test_npde_of_data_from_the_model_are_standard_normal_and_of_another_model_are_not(
        tmp_path):
    path = tmp_path / "pop.toml"
    path.write_text(POPULATION)
    data = design_data(30)
    # one replicate of the model's own design as the data (another seed than the check's)
    own = simulate_design("one_compartment", data, population=str(path), n=10, seed=7)
    good = npde("one_compartment", with_values(data, own.simulated[0]),
                population=str(path), n=500, seed=1)
    assert abs(np.mean(good.npde)) < 0.2 and abs(np.var(good.npde) - 1) < 0.3
    assert good.p_global > 0.01, str(good)
    # data from a model with twice the volume: concentrations half as high
    bad = npde("one_compartment", with_values(data, own.simulated[0] / 2),
               population=str(path), n=500, seed=1)
    assert np.mean(bad.npde) < -0.5 and bad.p_global < 1e-6, str(bad)
    assert "global p" in str(bad)
    figure = bad.plot()
    assert len(figure.axes) == 3


def test_npde_need_enough_replicates_and_a_covariance_to_decorrelate(tmp_path):
    data = design_data(2)
    error = {"C": ("additive", {"additive": mechsim.Quantity(0.5, "nM")})}
    with pytest.raises(ValidationError, match="replicates"):
        npde("one_compartment", data, n=50, error=error)
    zero = {"C": ("additive", {"additive": mechsim.Quantity(0.0, "nM")})}
    with pytest.raises(ValidationError, match="singular covariance"):
        npde("one_compartment", data, n=200, error=zero)
