"""Dose-response sweeps and Hill fits against known answers."""

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest

import mechsim
from mechsim import RegimenError, ValidationError
from mechsim.analysis.dose_response import dose_range, fit_hill

EMAX_MODEL = """
[parameters]
V = "2 L"
k = "0.1 1/day"
Emax = "80 percent"
EC50 = "5 nM"
[compartments]
plasma = "V"
[species.C]
compartment = "plasma"
unit = "nM"
[reactions.elimination]
equation = "C ->"
rate = "k*C"
[rules]
E = { expr = "Emax*C/(EC50 + C)", unit = "percent" }
[routes.iv]
target = "C"
"""


def hill(x, e0, emax, ed50, h):
    return e0 + emax * x ** h / (ed50 ** h + x ** h)


def test_fit_recovers_exact_hill_parameters():
    x = np.concatenate([[0], np.geomspace(0.01, 100, 15)])
    fit = fit_hill(x, hill(x, 10, -8, 3, 1.5), mechsim.ureg.mg, mechsim.ureg.g / mechsim.ureg.L)
    assert fit.e0.magnitude == pytest.approx(10, rel=1e-6)
    assert fit.emax.magnitude == pytest.approx(-8, rel=1e-6)
    assert fit.ed50.to("mg").magnitude == pytest.approx(3, rel=1e-6)
    assert fit.hill == pytest.approx(1.5, rel=1e-6)
    assert fit.r_squared == pytest.approx(1.0)


def test_confidence_intervals_cover_the_truth_with_noise():
    rng = np.random.default_rng(7)
    x = np.concatenate([[0], np.geomspace(0.01, 100, 25)])
    covered = 0
    for _ in range(40):
        y = hill(x, 10, -8, 3, 1.5) + rng.normal(0, 0.2, x.size)
        fit = fit_hill(x, y, mechsim.ureg.mg, mechsim.ureg.dimensionless)
        covered += fit.ed50_ci[0] <= 3 <= fit.ed50_ci[1]
    assert covered >= 33  # nominal 95 %: at least ~83 % of 40 in any reasonable run


def test_sweep_values_are_the_closed_form():
    dr = mechsim.dose_response("one_compartment", "{dose} iv", "10..1000 nmol", "max(C)",
                               until="1 day", n=5)
    doses = np.concatenate([[0], np.geomspace(10, 1000, 5)])
    np.testing.assert_allclose(dr.x.to("nmol").magnitude, doses)
    np.testing.assert_allclose(dr.y.to("nM").magnitude, doses / 10, rtol=1e-9)  # D / V


def test_background_is_given_in_every_run_including_dose_zero():
    dr = mechsim.dose_response("one_compartment", "{dose} iv at 12 h", "10..1000 nmol",
                               "value(C, 12 h)", background="1000 nmol iv", until="1 day", n=4)
    np.testing.assert_allclose(dr.y.to("nM").magnitude,
                               100 * 2 ** -0.5 + dr.x.to("nmol").magnitude / 10, rtol=1e-7)


def test_several_metrics_share_one_sweep():
    curves = mechsim.dose_response("one_compartment", "{dose} iv", "1..100 nmol",
                                   ["max(C)", "auc(C, 0 day, 1 day)"], until="1 day", n=4)
    assert [c.y_label for c in curves] == ["max(C)", "auc(C, 0 d, 1 d)"]


def test_concentration_effect_recovers_ec50(tmp_path):
    path = tmp_path / "emax.toml"
    path.write_text(EMAX_MODEL)
    res = mechsim.simulate(path, "200 nmol iv", until="60 day", every="0.5 day")
    ce = mechsim.concentration_effect(res, "C", "E")
    assert ce.fit.ed50.to("nM").magnitude == pytest.approx(5, rel=1e-5)
    assert ce.fit.hill == pytest.approx(1, rel=1e-5)
    assert ce.fit.emax.to("percent").magnitude == pytest.approx(80, rel=1e-5)
    ax = ce.plot()
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel() == "C [nM]" and ax.get_ylabel() == "E [%]"


def test_table_and_csv(tmp_path):
    dr = mechsim.dose_response("one_compartment", "{dose} iv", "10..1000 nmol", "max(C)",
                               until="1 day", n=4)
    dr.to_csv(tmp_path / "t.csv")
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[0] == "dose [nmol],max(C) [nM]" and len(lines) == 6
    with pytest.raises((ValueError, AttributeError)):
        dr.x.magnitude[0] = 5


@pytest.mark.parametrize("text, message", [
    ("0.01-100 mg/kg", "expected LOW..HIGH"),
    ("0..100 mg/kg", "need 0 < LOW < HIGH"),
    ("1..1e mg", "must be numbers"),
    ("1..10 furlongz", "cannot read"),
])
def test_bad_dose_ranges(text, message):
    with pytest.raises((ValidationError, mechsim.UnitError), match=message):
        dose_range(text)


def test_regimen_template_needs_placeholder_and_is_checked_before_running():
    with pytest.raises(RegimenError, match=r"must contain \{dose\}"):
        mechsim.dose_response("one_compartment", "10 mg iv", "1..10 mg", "max(C)",
                              until="1 day")
    with pytest.raises(RegimenError):
        mechsim.dose_response("one_compartment", "{dose} iv every", "1..10 mg", "max(C)",
                              until="1 day")
