"""Metrics against closed-form values of the one-compartment model."""

import math

import numpy as np
import pytest

import mechsim
from mechsim import ValidationError
from mechsim.analysis.metrics import Metric

V, K, C0 = 10.0, math.log(2), 100.0  # L, 1/day, nM after 1000 nmol


@pytest.fixture(scope="module")
def bolus():
    return mechsim.simulate("one_compartment", "1000 nmol iv every 2 day x 2", until="4 day",
                            every="0.001 day", rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("text, expected, unit", [
    ("value(C, 1 day)", C0 / 2, "nM"),
    ("max(C)", C0 * (1 + 0.25), "nM"),                        # just after the 2nd dose
    ("min(C, 0.5 day, 1.9 day)", C0 * 2 ** -1.9, "nM"),
    ("time_of_max(C)", 2.0, "day"),
    ("auc(C, 0 day, 2 day)", C0 / K * (1 - 0.25), "nM*day"),
    ("mean(C, 0 day, 2 day)", C0 / K * 0.75 / 2, "nM"),
    ("trough(C, 2 day)", C0 / 4, "nM"),
    ("time_above(C, 50 nM, 0 day, 2 day)", 1.0, "day"),
    ("time_below(C, 50 nM, 0 day, 2 day)", 1.0, "day"),
])
def test_metrics_match_closed_form(bolus, text, expected, unit):
    got = Metric.parse(text)(bolus)
    assert got.to(unit).magnitude == pytest.approx(expected, rel=1e-5)


def test_percent_of_baseline():
    res = mechsim.simulate("cd40_apc", "10 mg/kg iv", until="2 weeks", every="1 day")
    pct = Metric.parse("pct_baseline(IL6, 1 week)")(res)
    assert pct.units == mechsim.ureg.percent
    assert pct.magnitude == pytest.approx(100 * res["IL6"].magnitude[7] / res["IL6"].magnitude[0])


def test_round_trip_text():
    for text in ("auc(C_mass, 0 d, 28 d)", "time_above(RO, 0.9)", "max(C)"):
        assert str(Metric.parse(text)) == text
        assert Metric.parse(str(Metric.parse(text))) == Metric.parse(text)


@pytest.mark.parametrize("text, message", [
    ("max C", "expected NAME"),
    ("peak(C)", "unknown metric 'peak'"),
    ("value(C)", "takes 1 argument"),
    ("auc(C, 1 mg, 2 day)", "must be a time"),
    ("value(C, lots)", "cannot read 'lots'"),
    ("value(C, 9 day)", "outside the run"),
    ("value(X, 1 day)", "no output named 'X'"),
    ("time_above(C, 1 mg)", "does not match the unit"),
    ("trough(C, 1.5 day)", "no dose at 1.5 d"),
    ("auc(C, 2 day, 1 day)", "start < end"),
    ("__import__('os')(C)", "expected NAME"),
])
def test_bad_metrics(bolus, text, message):
    with pytest.raises((ValidationError, mechsim.UnitError), match=message):
        Metric.parse(text)(bolus)
    assert np.isfinite(bolus.time_days).all()


def test_every_metric_reads_in_words_with_the_model_label():
    """Axis labels: every metric name has words (no name falls through), and the output's
    label replaces its name when the model gives one."""
    from mechsim.analysis.metrics import METRICS, Metric

    labels = {"C_mass": "drug in plasma"}
    for name, (counts, _) in METRICS.items():
        args = ["1 day", "2 day", "3 day"][:counts[-1]]
        if name in ("time_above", "time_below"):
            args = ["1 mg/L", "1 day", "2 day"][:counts[-1]]
        metric = Metric.parse(f"{name}({', '.join(['C_mass', *args])})")
        words = metric.describe(labels)
        assert "drug in plasma" in words and "C_mass" not in words, name
        assert metric.describe().count("C_mass") == 1, name


def test_a_metric_of_an_output_in_the_unit_asked_for():
    import mechsim
    from mechsim import UnitError
    from mechsim.analysis.metrics import Metric

    res = mechsim.simulate("one_compartment", "100 mg iv", until="2 day", every="1 h")
    in_ng = Metric.parse("max(C_mass [ng/mL])")
    assert str(in_ng) == "max(C_mass[ng/mL])" and in_ng.bare_output == "C_mass"
    value = in_ng(res)
    assert str(value.units) == "nanogram / milliliter"
    # 100 mg into 10 L: 10 mg/L at the bolus, 10,000 ng/mL
    assert value.magnitude == pytest.approx(10_000, rel=1e-9)
    auc = Metric.parse("auc(C_mass[ug/mL], 0 day, 1 day)")(res)
    assert auc.to("mg*day/L").magnitude == pytest.approx(
        Metric.parse("auc(C_mass, 0 day, 1 day)")(res).to("mg*day/L").magnitude, rel=1e-12)
    with pytest.raises(UnitError, match="output C_mass is in mg/L"):
        Metric.parse("max(C_mass[nmol])")(res)
    with pytest.raises(mechsim.ValidationError, match="no output named 'C_nope'"):
        mechsim.dose_response("one_compartment", "{dose} iv", "1..10 mg", "max(C_nope[mg/L])",
                              until="1 day", n=3)


def test_a_profile_that_does_not_move_has_no_time_of_nadir():
    import math

    import mechsim
    from mechsim.analysis.metrics import Metric

    flat = mechsim.simulate("cd40_apc", None, until="4 weeks", every="1 day")
    for text in ("time_of_nadir(IL6_rel)", "time_of_max(IL6_rel)"):
        assert math.isnan(Metric.parse(text)(flat).magnitude)
    dosed = mechsim.simulate("cd40_apc", "3 mg/kg iv", until="4 weeks", every="1 day")
    assert 0 < Metric.parse("time_of_nadir(IL6_rel)")(dosed).to("day").magnitude <= 28
