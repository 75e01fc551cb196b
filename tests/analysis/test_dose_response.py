"""Dose-response sweeps and curve fits against known answers: data generated exactly by each
curve (with and without noise), hand-computed sweeps, warnings on shapes made to trigger them."""

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest

import mechsim
from mechsim import RegimenError, ValidationError
from mechsim.analysis.dose_response import (
    ExposureResponse,
    ExposureResponses,
    dose_range,
    fit_hill,
)
from mechsim.scenario import read_scenario
from mechsim.units import format_unit

U = mechsim.ureg

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
    _, second = curves  # still unpacks like the tuple it used to be
    assert curves[1] is second and len(curves) == 2


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


# ---- the three curves, the choice between them and the warnings --------------------------
DOSES = np.concatenate([[0], np.geomspace(0.01, 100, 15)])


def linear(x, e0=2.0, slope=0.5):
    return e0 + slope * x


def emax(x, e0=10.0, top=-8.0, ed50=3.0):
    return e0 + top * x / (ed50 + x)


def sigmoid(x, e0=10.0, top=-8.0, ed50=3.0, h=2.5):
    return hill(x, e0, top, ed50, h)


def asymmetric(x, e0=10.0, top=-8.0, c=3.0, h=4.0, s=0.3):
    """The five-parameter logistic written out by hand: the Hill fraction with scale c,
    raised to the power s."""
    x = np.asarray(x, dtype=float)
    frac = x ** h / (c ** h + x ** h)
    return e0 + top * frac ** s


def asymmetric_ed50(c=3.0, h=4.0, s=0.3):
    """The dose of half the effect of :func:`asymmetric`, solved by hand: frac^s = 1/2."""
    frac = 0.5 ** (1 / s)
    return c * (frac / (1 - frac)) ** (1 / h)


GENERATORS = {"linear": linear, "emax": emax, "sigmoid": sigmoid, "asymmetric": asymmetric}


def analyse(y, x=DOSES, fit_model="auto", x_unit="mg/kg", y_unit="g/L"):
    return ExposureResponse.analyse(U.Quantity(x, x_unit), U.Quantity(y, y_unit), x_label="dose",
                                    y_label="E", fit_model=fit_model)


def test_each_curve_recovers_its_own_parameters_from_exact_data():
    lin = analyse(linear(DOSES), fit_model="linear").fit
    assert lin.e0.to("g/L").magnitude == pytest.approx(2.0, rel=1e-9)
    assert lin.slope.to("g/L/(mg/kg)").magnitude == pytest.approx(0.5, rel=1e-9)
    em = analyse(emax(DOSES), fit_model="emax").fit
    assert (em.e0.magnitude, em.emax.magnitude, em.ed50.to("mg/kg").magnitude) == \
        pytest.approx((10, -8, 3), rel=1e-6)
    assert em.hill == 1 and em.hill_ci == (1, 1)
    sg = analyse(sigmoid(DOSES), fit_model="sigmoid").fit
    assert (sg.e0.magnitude, sg.emax.magnitude, sg.ed50.magnitude, sg.hill) == \
        pytest.approx((10, -8, 3, 2.5), rel=1e-6)
    asym = analyse(asymmetric(DOSES), fit_model="asymmetric").fit
    assert (asym.e0.magnitude, asym.emax.magnitude, asym.ed50.magnitude, asym.hill,
            asym.asymmetry) == pytest.approx((10, -8, asymmetric_ed50(), 4.0, 0.3), rel=1e-5)
    # half the effect at ED50, 10 % and 90 % where the hand-solved curve has them
    assert asym.predict(asym.ed50).magnitude == pytest.approx(10 - 4, rel=1e-9)
    for fraction in (0.1, 0.9):
        dose = asym.effect_dose(fraction)
        assert asymmetric(dose) == pytest.approx(10 - 8 * fraction, rel=1e-9)
    for fit in (lin, em, sg, asym):
        assert fit.lack_of_fit.largest_miss < 1e-6 and fit.r_squared == pytest.approx(1)


@pytest.mark.parametrize("name", list(GENERATORS))
def test_aicc_chooses_the_curve_that_generated_exact_data(name):
    er = analyse(GENERATORS[name](DOSES))
    assert er.fit.model == name
    assert er.warnings == ()
    aicc = {c.model: c.aicc for c in er.candidates}
    assert set(aicc) == {"linear", "emax", "sigmoid", "asymmetric"}
    assert aicc[name] == min(v for v in aicc.values() if np.isfinite(v))
    if name == "emax":  # the sigmoid (h = 1) also goes through every point: only the
        # penalty for its extra parameter separates them, 2 + AICc's correction: k = 4 and 5
        # (with the residual variance), n = 16
        assert aicc["sigmoid"] - aicc["emax"] == pytest.approx(
            2 + 2 * 5 * 6 / (16 - 5 - 1) - 2 * 4 * 5 / (16 - 4 - 1), rel=1e-6)


@pytest.mark.parametrize("name, true, value", [
    ("linear", 0.5, lambda f: f.slope.magnitude),
    ("emax", 3.0, lambda f: f.ed50.magnitude),
    ("sigmoid", 3.0, lambda f: f.ed50.magnitude),
])
def test_noisy_data_give_intervals_that_cover_the_true_value(name, true, value):
    rng = np.random.default_rng(11)
    x = np.concatenate([[0], np.geomspace(0.01, 100, 25)])
    covered, estimates = 0, []
    for _ in range(40):
        y = GENERATORS[name](x) + rng.normal(0, 0.2, x.size)
        fit = analyse(y, x=x, fit_model=name).fit
        ci = fit.slope_ci if name == "linear" else fit.ed50_ci
        covered += ci[0] <= true <= ci[1]
        estimates.append(value(fit))
    assert covered >= 33  # nominal 95 % of 40; 33 or more in any reasonable run
    assert np.median(estimates) == pytest.approx(true, rel=0.1)


def test_noisy_sigmoid_data_are_still_told_from_an_emax_curve():
    rng = np.random.default_rng(5)
    x = np.concatenate([[0], np.geomspace(0.01, 100, 25)])
    chosen = [analyse(sigmoid(x, h=3.0) + rng.normal(0, 0.1, x.size), x=x).fit.model
              for _ in range(20)]
    assert chosen.count("sigmoid") >= 18


def test_a_response_that_bends_sharply_into_its_plateau_is_followed():
    """A target saturated and then kept occupied bends sharply into the plateau: the
    symmetric sigmoid misses the corner (with a warning), the asymmetric curve goes through
    every point and is chosen."""
    y = asymmetric(DOSES, h=8.0, s=0.1)
    symmetric = analyse(y, fit_model="sigmoid")
    assert symmetric.fit.lack_of_fit.largest_miss > 0.03
    assert any("does not follow the shape" in w for w in symmetric.warnings)
    chosen = analyse(y)
    assert chosen.fit.model == "asymmetric" and chosen.warnings == ()
    assert chosen.fit.lack_of_fit.largest_miss < 1e-5

def test_a_u_shaped_response_is_reported_where_it_turns():
    x = np.concatenate([[0], np.geomspace(0.01, 100, 9)])   # 0.01, 0.0316, 0.1, ... 100
    y = (np.log10(np.where(x > 0, x, 1e-3)) - 0) ** 2       # lowest at dose 1 (log 0)
    er = analyse(y, x=x)
    note = [w for w in er.warnings if "not monotonic" in w]
    assert len(note) == 1 and "\n" not in note[0]
    assert "turns at 1 mg/kg" in note[0] and "falls overall but rises by 4 g/L" in note[0]
    # the best monotonic curve misses this by a third of the range or more: none is drawn
    assert er.fit is None and er.no_fit.startswith("no curve fits this response")
    assert "\n" not in er.no_fit and er.summary().splitlines()[0].startswith("E [g/L]: no curve")


@pytest.mark.parametrize("name", list(GENERATORS))
def test_monotonic_responses_raise_no_monotonic_warning(name):
    for sign in (1, -1):
        er = analyse(sign * GENERATORS[name](DOSES))
        assert not [w for w in er.warnings if "monotonic" in w]


def test_a_reversal_below_one_percent_of_the_range_is_not_reported():
    y = emax(DOSES)
    y[-1] = y[-2] + 0.005 * np.ptp(y)  # rises by 0.5 % of the range at the top
    assert not [w for w in analyse(y).warnings if "monotonic" in w]
    y[-1] = y[-2] + 0.05 * np.ptp(y)
    assert [w for w in analyse(y).warnings if "monotonic" in w]


def test_an_emax_curve_forced_on_a_steep_response_misses_the_plateau():
    er = analyse(sigmoid(DOSES, h=4.0), fit_model="emax")
    assert er.fit.model == "emax"
    assert [w for w in er.warnings if w.startswith("the curve misses the plateau")]
    assert [w for w in er.warnings if w.startswith("the Emax curve misses the points")]
    assert analyse(sigmoid(DOSES, h=4.0)).warnings == ()  # the right curve: no warning


def test_doses_that_stop_at_half_the_ed50_make_emax_an_extrapolation():
    x = np.concatenate([[0], np.geomspace(0.01, 1.5, 12)])  # ED50 = 3
    er = analyse(emax(x), x=x, fit_model="emax")
    # at 1.5 = ED50/2 the effect is a third of Emax: E0 + Emax lies 2 ranges beyond
    assert er.fit.ed50.magnitude == pytest.approx(3, rel=1e-6)
    assert [w for w in er.warnings if w.startswith("Emax is an extrapolation")
            and "200 % of the range" in w]


def test_a_step_between_two_doses_is_flagged_as_resting_on_too_few_points():
    coarse = np.concatenate([[0], np.geomspace(0.01, 100, 7)])  # one point a decade
    er = analyse(sigmoid(coarse, h=12.0), x=coarse, fit_model="sigmoid")
    assert [w for w in er.warnings if "steep part of the curve" in w]
    fine = np.concatenate([[0], np.geomspace(1, 9, 30)])
    er = analyse(sigmoid(fine, h=12.0), x=fine, fit_model="sigmoid")
    assert not [w for w in er.warnings if "steep part" in w]


def test_no_curve_for_a_flat_response_or_too_few_points():
    flat = analyse(np.full(DOSES.size, 4.0))
    assert flat.fit is None and "does not change with dose" in flat.no_fit
    x = np.array([0, 1, 10, 100.0])
    few = analyse(emax(x), x=x)
    assert few.fit is None
    assert [c.rejected for c in few.candidates] == [
        "needs at least 5 points, has 4", "needs at least 6 points, has 4",
        "needs at least 7 points, has 4", "needs at least 8 points, has 4"]


def test_a_named_curve_that_cannot_fit_is_stated_not_drawn():
    er = analyse(sigmoid(DOSES, h=6.0), fit_model="linear")
    assert er.fit is None
    assert er.no_fit.startswith("the linear curve does not fit this response: it misses")


def test_an_auc_linear_in_dose_chooses_the_linear_curve():
    # one_compartment: V = 10 L, half-life 1 day, so AUC(0-1 day) = D/V (1 - 1/2) / ln 2
    dr = mechsim.dose_response("one_compartment", "{dose} iv", "1..1000 nmol",
                               "auc(C, 0 day, 1 day)", until="1 day", n=8)
    assert dr.fit.model == "linear" and dr.warnings == ()
    assert dr.fit.slope.to("nM*day/nmol").magnitude == pytest.approx(0.05 / np.log(2),
                                                                     rel=1e-6)
    assert abs(dr.fit.e0.to("nM*day").magnitude) < 1e-6


def test_several_metrics_make_one_long_table_and_one_figure(tmp_path):
    metrics = ["max(C)", "auc(C, 0 day, 1 day)", "value(C, 1 day)"]
    sweep = mechsim.dose_response("one_compartment", "{dose} iv every 12 h x 2",
                                  "10..1000 nmol", metrics, until="1 day", n=5)
    assert isinstance(sweep, ExposureResponses) and len(sweep) == 3
    rows = sweep.rows()
    assert len(rows) == 3 * 6
    assert [r[0] for r in rows] == [str(mechsim.Metric.parse(m)) for m in metrics
                                    for _ in range(6)]
    assert {r[4] for r in rows[:6]} == {"nM"} and {r[4] for r in rows[6:12]} == {"d*nM"}
    doses = np.concatenate([[0], np.geomspace(10, 1000, 5)])
    np.testing.assert_allclose([r[1] for r in rows[12:]], doses)
    # value(C, 1 day) after D at 0 and 12 h: D/V (1/2 + 1/sqrt 2), with V = 10 L
    np.testing.assert_allclose([r[2] for r in rows[12:]], doses / 10 * (0.5 + 2 ** -0.5),
                               rtol=1e-7)
    path = tmp_path / "dr.csv"
    sweep.to_csv(path)
    lines = path.read_text().splitlines()
    assert lines[0] == "metric,dose [nmol],value,fitted,unit" and len(lines) == 19
    assert lines[7].startswith('"auc(C, 0 d, 1 d)",0.0,')
    axes = sweep.plot()
    visible = [ax for ax in axes.ravel() if ax.get_visible()]
    assert len(visible) == 3
    for ax, metric in zip(visible, sweep):
        unit = format_unit(metric.y.units)
        assert ax.get_ylabel().endswith(f"\n{metric.y_label} [{unit}]")
        assert ax.get_ylabel().startswith(mechsim.Metric.parse(metric.y_label).describe())
        assert ax.get_xlabel() == "dose [nmol]"
    title = visible[0].figure._suptitle.get_text()
    assert "{dose}" not in title and "10-1000 nmol iv every 12 h x 2" in title


def test_a_figure_names_the_metric_in_words_and_fills_in_the_doses():
    dr = mechsim.dose_response("one_compartment", "{dose} iv", "10..1000 nmol",
                               "auc(C, 0 day, 1 day)", until="1 day", n=4)
    ax = dr.plot()
    assert ax.get_ylabel() == "area under the curve of C from 0 d to 1 d\n" \
                              "auc(C, 0 d, 1 d) [d*nM]"
    assert "{dose}" not in ax.get_title() and "10-1000 nmol iv" in ax.get_title()
    # dose 0 is drawn left of the lowest dose, labelled 0
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == "0"


def test_an_unknown_curve_name_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValidationError, match="fit model 'foo': expected one of auto, linear, "
                                              "emax, sigmoid"):
        mechsim.dose_response("one_compartment", "{dose} iv", "1..10 mg", "max(C)",
                              until="1 day", fit_model="foo")
    path = tmp_path / "s.toml"
    path.write_text('[scenario]\nmodel = "one_compartment"\nuntil = "1 day"\n'
                    'outputs = ["C"]\n[arms.a]\nregimen = "1 mg iv"\n[dose_response]\n'
                    'regimen = "{dose} iv"\ndoses = "1..10 mg"\nmetric = "max(C)"\n'
                    'fit_model = "foo"\n')
    with pytest.raises(ValidationError, match=r"s\.toml:7: \[dose_response\]: fit model "
                                              "'foo'"):
        read_scenario(path)


def test_round_off_on_a_flat_response_is_neither_a_curve_nor_a_turn():
    y = 5.0 + 1e-12 * np.sin(np.arange(DOSES.size))  # solver-sized wiggles on a constant
    er = analyse(y)
    assert er.fit is None and "does not change with dose" in er.no_fit
    assert er.warnings == ()


def test_a_curve_whose_ed50_lies_far_beyond_the_doses_is_rejected():
    """Doses that see only the foot of an Emax curve (ED50 a thousand times the highest
    dose: the response is almost linear) cannot determine ED50 and Emax apart: such a fit is
    rejected with its reason, and the straight line is chosen."""
    x = np.concatenate([[0], np.geomspace(0.01, 1, 12)])
    y = emax(x, ed50=1000.0)
    named = analyse(y, x=x, fit_model="emax")
    assert named.fit is None
    assert "lies more than 10 times outside the doses" in named.no_fit
    assert analyse(y, x=x).fit.model == "linear"
