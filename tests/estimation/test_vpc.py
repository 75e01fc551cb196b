"""Visual predictive checks: replicates of the design, residual error, bins, the figure."""

import numpy as np
import pytest

import mechsim
from mechsim import ValidationError
from mechsim.cli import main
from mechsim.estimation.vpc import vpc

UNITS = {"TIME": "h", "AMT": "mg", "DV": "mg/L", "WGT": "kg"}


@pytest.fixture(scope="module")
def pheno():
    return mechsim.read_dataset("pheno", units=UNITS, route="iv", observe="C")


def test_data_that_are_the_models_own_predictions_sit_on_the_simulated_medians(pheno):
    """The design of pheno with its observations replaced by the model's predictions and a
    residual error of 1e-6: every observed percentile is the simulated one."""
    from dataclasses import replace

    subjects = []
    for s in pheno.subjects:
        res = mechsim.simulate("phenobarbital", s.regimen, until=s.times.max(),
                               times=s.times, params=["phenobarbital_fit"],
                               overrides={"WGT": s.covariates["WGT"]})
        subjects.append(replace(s, values=res["C"].to("mg/L").magnitude))
    exact = replace(pheno, subjects=tuple(subjects))
    check = vpc("phenobarbital", exact, params=["phenobarbital_fit"], n=50, seed=3,
                error={"C": ("proportional", {"proportional": 1e-6})})
    np.testing.assert_allclose(check.observed_percentiles, check.simulated[:, 1], rtol=1e-4)
    assert check.observed_percentiles.shape == (3, len(check.centers))
    assert np.all(np.diff(check.edges) > 0) and check.replicates == 50


def test_the_fitted_file_brings_its_error_model_and_a_wrong_model_shows(pheno):
    good = vpc("phenobarbital", pheno, params=["phenobarbital_fit"], n=200, seed=1)
    bad = vpc("phenobarbital", pheno, params=["phenobarbital_fit"], n=200, seed=1,
              overrides={"CL_per_kg": "0.01 L/h/kg"})  # twice the clearance
    assert bad.outside().sum() > good.outside().sum() + 6


def test_a_vpc_needs_an_error_model(pheno):
    with pytest.raises(ValidationError, match="no residual error model for C"):
        vpc("phenobarbital", pheno, n=20)


def test_the_command_line_draws_the_figure(tmp_path, capsys):
    out = tmp_path / "v.png"
    assert main(["vpc", "phenobarbital", "pheno", "--units", "TIME=h,AMT=mg,DV=mg/L,WGT=kg",
                 "--observe", "C", "--params", "phenobarbital_fit", "--n", "50",
                 "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    assert "replicates" in capsys.readouterr().out
