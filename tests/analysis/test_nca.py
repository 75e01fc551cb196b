"""NCA against closed forms of one-compartment PK, hand-computed trapezoids and best-fit
choices, and properties any NCA must have (scaling, time shifts, bounds between rules)."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, stats

from mechsim import UnitError, ValidationError, ureg
from mechsim.analysis.nca import NCADose, nca, nca_profile
from mechsim.analysis.nca_rules import auc_segments, best_fit_lambda_z
from mechsim.testing import bolus_1cpt, infusion_1cpt, oral_1cpt, superpose

from budget import examples

D, V, CL = 100.0, 10.0, 2.0          # mg, L, L/h
K = CL / V                           # 1/h
LN2 = math.log(2)


def q(values, unit):
    return ureg.Quantity(np.asarray(values, dtype=float), unit)


# ---- closed forms ----------------------------------------------------------------------------
def test_iv_bolus_matches_the_closed_form():
    t = np.linspace(0, 48, 97)                   # to ~10 half-lives, every 0.5 h
    c = bolus_1cpt(t, D, V, K)
    r = nca(q(t, "h"), q(c, "mg/L"), dose="100 mg", kind="bolus")
    # the log-down rule is exact on a mono-exponential: only rounding separates these
    assert r.auclast.to("mg*h/L").magnitude == pytest.approx(D / CL * (1 - math.exp(-K * 48)),
                                                              rel=1e-12)
    assert r.aucinf.to("mg*h/L").magnitude == pytest.approx(D / CL, rel=1e-12)
    assert r.lambda_z.to("1/h").magnitude == pytest.approx(K, rel=1e-12)
    assert r.half_life.to("h").magnitude == pytest.approx(LN2 * V / CL, rel=1e-12)
    assert r.cl.to("L/h").magnitude == pytest.approx(CL, rel=1e-12)
    assert r.vz.to("L").magnitude == pytest.approx(V, rel=1e-12)
    assert r.cl_label == "CL" and r.vz_label == "Vz"
    # AUMC to infinity of C0 exp(-kt) is C0/k^2, so MRT = 1/k
    assert r.aumcinf.to("mg*h**2/L").magnitude == pytest.approx(D / V / K ** 2, rel=1e-12)
    assert r.mrt.to("h").magnitude == pytest.approx(1 / K, rel=1e-12)
    assert r.c0.to("mg/L").magnitude == pytest.approx(D / V)
    assert (r.cmax.to("mg/L").magnitude, r.tmax.magnitude) == (pytest.approx(D / V), 0.0)
    # every point after C0 is on the line: the tie rule takes them all
    assert r.lambda_z_points == 96 and r.lambda_z_adj_r2 == pytest.approx(1.0)
    assert r.auc_pct_extrapolated.to("percent").magnitude == \
        pytest.approx(100 * math.exp(-K * 48), rel=1e-10)
    assert r.notes == ()


def test_iv_bolus_without_a_sample_at_the_dose_back_extrapolates_c0():
    t = np.array([0.5, 1, 2, 4, 8, 12, 24])
    r = nca(q(t, "h"), q(bolus_1cpt(t, D, V, K), "mg/L"), dose="100 mg", kind="bolus")
    assert r.c0.to("mg/L").magnitude == pytest.approx(D / V, rel=1e-12)
    assert r.aucinf.to("mg*h/L").magnitude == pytest.approx(D / CL, rel=1e-12)
    assert any("back-extrapolated" in n for n in r.notes)


def test_oral_cmax_and_tmax_match_the_bateman_function():
    ka, f = 1.5, 0.6                                       # 1/h, bioavailability
    tmax = math.log(ka / K) / (ka - K)                     # analytic: 1.56 h
    t = np.arange(0, 72.0001, 0.01)
    c = oral_1cpt(t, D, V, K, ka, f)
    r = nca(q(t, "h"), q(c, "mg/L"), dose="100 mg")
    assert r.tmax.to("h").magnitude == pytest.approx(tmax, abs=0.005)   # half a step
    assert r.cmax.to("mg/L").magnitude == pytest.approx(
        float(oral_1cpt(tmax, D, V, K, ka, f)), rel=1e-5)
    # CL/F: the nominal dose over AUC (the linear-up rule on the rise: O(step^2) error)
    assert r.cl_label == "CL/F"
    assert r.cl.to("L/h").magnitude == pytest.approx(CL / f, rel=1e-5)
    # best fit: fits within 1e-4 of the best adjusted R^2 tie, and the longest of them
    # reaches back to where absorption (exp(-ka t)) still bends the curve a little
    assert r.lambda_z.to("1/h").magnitude == pytest.approx(K, rel=1e-3)
    assert r.vz.to("L").magnitude == pytest.approx(V / f, rel=1e-3)


def test_a_sample_missing_at_the_dose_of_an_oral_dose_is_taken_as_zero():
    t = np.array([0.25, 0.5, 1, 2, 4, 8, 12, 24])
    with_zero = nca(q(np.r_[0, t], "h"), q(np.r_[0, oral_1cpt(t, D, V, K, 2.0)], "mg/L"))
    without = nca(q(t, "h"), q(oral_1cpt(t, D, V, K, 2.0), "mg/L"))
    assert without.auclast == with_zero.auclast
    assert any("C = 0 assumed" in n for n in without.notes)


def test_infusion_peak_auc_and_mrt():
    dur, rate = 2.0, D / 2.0                               # h, mg/h
    t = np.union1d(np.linspace(0, 2, 201), np.linspace(2, 60, 581))
    c = infusion_1cpt(t, rate, dur, V, K)
    r = nca(q(t, "h"), q(c, "mg/L"), dose="100 mg", kind="infusion", duration="2 h")
    assert r.tmax.to("h").magnitude == pytest.approx(dur)
    assert r.cmax.to("mg/L").magnitude == pytest.approx(rate / CL * (1 - math.exp(-K * dur)))
    assert r.cl.to("L/h").magnitude == pytest.approx(CL, rel=1e-5)
    assert r.vz.to("L").magnitude == pytest.approx(V, rel=1e-5)
    # the infusion's mean input time (dur/2) is taken off: MRT in the body is 1/k
    assert r.mrt.to("h").magnitude == pytest.approx(1 / K, rel=1e-4)


def test_multiple_bolus_doses_each_interval_and_the_whole_profile():
    tau, n = 6.0, 12                                       # h, doses
    dose_times = tau * np.arange(n)
    t = np.arange(0, n * tau + 48 + 1e-9, 0.25)
    c = superpose(lambda s: bolus_1cpt(s, D, V, K), dose_times, t)
    # the value just before each later dose, as a trough sample taken before the dose
    pre_t = dose_times[1:]
    pre_c = np.array([sum(float(bolus_1cpt(a - b, D, V, K)) for b in dose_times if b < a)
                      for a in pre_t])
    times = np.concatenate([t, pre_t])
    values = np.concatenate([c, pre_c])
    before = np.concatenate([np.zeros(t.size, bool), np.ones(pre_t.size, bool)])
    order = np.lexsort((~before, times))
    doses = [NCADose(ureg.Quantity(a, "h"), ureg.Quantity(D, "mg"), "bolus")
             for a in dose_times]
    p = nca_profile(q(times[order], "h"), q(values[order], "mg/L"), doses,
                    before_dose=before[order])
    r = 1 - math.exp(-K * tau)
    for k, iv in enumerate(p.intervals):
        growth = 1 - math.exp(-K * tau * (k + 1))          # 1 - e^{-k tau (n+1)}
        # AUC over interval k of the superposed boluses: D/CL (1 - e^{-k tau (k+1)})
        assert iv.auctau.to("mg*h/L").magnitude == pytest.approx(D / CL * growth, rel=1e-12)
        assert iv.cmax.to("mg/L").magnitude == pytest.approx(D / V * growth / r, rel=1e-12)
        assert iv.ctrough.to("mg/L").magnitude == pytest.approx(
            D / V * growth / r * math.exp(-K * tau), rel=1e-12)
        assert iv.tmax.magnitude == 0 and iv.tau.to("h").magnitude == tau and not iv.to_end
        assert iv.cavg.magnitude == pytest.approx(iv.auctau.magnitude / tau)
    # near steady state AUCtau = Dose/CL
    assert p.intervals[-1].auctau.to("mg*h/L").magnitude == pytest.approx(D / CL, rel=1e-6)
    # whole profile: total dose / AUC(0-inf) is CL for linear kinetics (superposition)
    assert p.whole.cl.to("L/h").magnitude == pytest.approx(CL, rel=1e-12)
    assert p.whole.dose.to("mg").magnitude == n * D
    assert p.whole.lambda_z.to("1/h").magnitude == pytest.approx(K, rel=1e-12)
    assert p.interval_at(ureg.Quantity(30, "h")).number == 6
    with pytest.raises(ValidationError, match="no dose at 31 h"):
        p.interval_at(ureg.Quantity(31, "h"))


# ---- hand computations ---------------------------------------------------------------------
def test_linear_up_log_down_by_hand():
    auc, _ = auc_segments([0, 1, 2, 4], [0, 4, 2, 1])
    # up 0->4: linear, 2; down 4->2 over 1 h and 2->1 over 2 h: (C1-C2) dt / ln(C1/C2)
    assert auc.tolist() == pytest.approx([2.0, 2 / LN2, 2 / LN2], rel=1e-15)
    auc, _ = auc_segments([0, 1, 2, 3], [5, 2, 3, 1])
    assert auc.tolist() == pytest.approx([3 / math.log(2.5), 2.5, 2 / math.log(3)], rel=1e-15)
    # a fall to zero cannot be logarithmic; a flat segment is a rectangle; a jump is nothing
    auc, _ = auc_segments([0, 1, 2, 2, 3], [2, 0, 0, 5, 5])
    assert auc.tolist() == [1.0, 0.0, 0.0, 5.0]


def test_aumc_segments_by_the_same_rules():
    t, c = [1.0, 2.0, 5.0], [4.0, 2.0, 3.0]
    _, aumc = auc_segments(t, c)
    # down: the integral of t C(t) for the exponential through (1, 4) and (2, 2);
    # up: the linear rule's trapezoid of t*C (Phoenix), (2*2 + 5*3)/2 * 3 = 28.5
    down = integrate.quad(lambda s: s * 4 * 2 ** -(s - 1), 1, 2)[0]
    assert aumc.tolist() == pytest.approx([down, 28.5], rel=1e-12)


def test_best_fit_takes_the_last_four_points_when_the_fifth_breaks_the_line():
    # after Cmax (50 at 1 h): 40, 30, then 8, 4, 2, 1 halving every 2 h: the last four are
    # exactly log-linear; the fifth (30 at 4 h, 16 on the line) bends the fit
    t = [0, 1, 2, 4, 6, 8, 10, 12]
    c = [0, 50, 40, 30, 8, 4, 2, 1]
    r = nca(q(t, "h"), q(c, "mg/L"))
    assert r.lambda_z_points == 4
    assert r.lambda_z.to("1/h").magnitude == pytest.approx(LN2 / 2, rel=1e-12)
    assert [x.magnitude for x in r.lambda_z_range] == [6, 12]
    assert r.lambda_z_adj_r2 == pytest.approx(1.0)
    # by hand, the 5-point fit is far from perfect, so it cannot tie
    five = stats.linregress(t[-5:], np.log(c[-5:]))
    assert 1 - (1 - five.rvalue ** 2) * 4 / 3 < 0.98


def _adj_r2(t, c):
    fit = stats.linregress(t, np.log(c))
    n = len(t)
    return 1 - (1 - fit.rvalue ** 2) * (n - 1) / (n - 2)


@pytest.mark.parametrize("bump, expected_points", [(1.002, 4), (1.03, 3)])
def test_best_fit_tie_rule(bump, expected_points):
    """The last three points are exact; the fourth from last is raised a little.  Within
    1e-4 of the best adjusted R^2 the fit with more points wins, beyond it the best."""
    t = np.array([0, 1, 3, 5, 7, 9.0])
    c = 10 * np.exp(-0.3 * t)
    c[0] = 0.0
    c[2] *= bump
    best3, four = _adj_r2(t[-3:], c[-3:]), _adj_r2(t[-4:], c[-4:])
    within = best3 - four <= 1e-4
    assert within == (expected_points == 4)        # the bumps do what this test needs
    fit, why = best_fit_lambda_z(t[2:], c[2:])
    assert why == "" and fit.points == expected_points


@pytest.mark.parametrize("t, c, reason", [
    ([0, 1, 2, 3], [0, 10, 5, 2.5], "2 positive samples after Cmax (3 needed)"),
    ([0, 1, 2, 3, 4], [0, 1, 2, 3, 4], "0 positive samples after Cmax"),
    ([0, 1, 2, 3, 4, 5], [0, 10, 4, 4, 4, 4], "do not decline"),
    ([0, 1, 2, 3, 4, 5], [0, 10, 1, 2, 3, 4], "do not decline"),
])
def test_terminal_phase_not_estimable_is_nan_with_a_reason(t, c, reason):
    r = nca(q(t, "h"), q(c, "mg/L"), dose="10 mg")
    assert math.isnan(r.lambda_z.magnitude) and r.lambda_z_points == 0
    for x in (r.half_life, r.aucinf, r.cl, r.vz, r.auc_pct_extrapolated):
        assert math.isnan(x.magnitude)
    assert any(reason in n for n in r.notes), r.notes
    assert math.isfinite(r.auclast.magnitude) and math.isfinite(r.cmax.magnitude)


def test_zero_profile_has_zero_area_and_no_terminal_phase():
    r = nca(q([0, 1, 2, 3], "h"), q([0, 0, 0, 0], "mg/L"), dose="1 mg")
    assert r.cmax.magnitude == 0 and r.auclast.magnitude == 0
    assert math.isnan(r.clast.magnitude) and math.isnan(r.lambda_z.magnitude)


# ---- units ---------------------------------------------------------------------------------
def test_units_carry_through_and_any_compatible_unit_gives_the_same_answer():
    t = np.linspace(0, 48, 97)
    c = bolus_1cpt(t, D, V, K)
    hours = nca(q(t, "h"), q(c, "mg/L"), dose="100 mg", kind="bolus")
    minutes = nca(q(t * 60, "min"), q(c * 1000, "ug/L"), dose="0.1 g", kind="bolus")
    for name in ("cmax", "tmax", "auclast", "aucinf", "lambda_z", "half_life", "cl", "vz",
                 "aumcinf", "mrt"):
        a, b = getattr(hours, name), getattr(minutes, name)
        assert b.to(a.units).magnitude == pytest.approx(a.magnitude, rel=1e-10), name
    assert str(hours.cl.units) == "liter / hour" and str(hours.vz.units) == "liter"
    assert minutes.half_life.units == ureg.minute


def test_dose_per_body_weight_gives_clearance_per_kg():
    t = np.linspace(0, 48, 97)
    r = nca(q(t, "h"), q(bolus_1cpt(t, D, V, K), "mg/L"), dose="2 mg/kg", kind="bolus")
    # 2 mg/kg over AUCinf = D/CL: CL per kg of a 50 kg patient
    assert r.cl.to("L/h/kg").magnitude == pytest.approx(2 * CL / D, rel=1e-12)
    assert r.vz.to("L/kg").magnitude == pytest.approx(2 * V / D, rel=1e-12)


def test_mass_dose_against_molar_concentrations_is_nan_with_a_reason():
    t = np.linspace(0, 48, 97)
    r = nca(q(t, "h"), q(bolus_1cpt(t, D, V, K), "nM"), dose="100 mg", kind="bolus")
    assert math.isnan(r.cl.magnitude) and math.isnan(r.vz.magnitude)
    assert any("give both as mass or both as amount of substance" in n for n in r.notes)
    assert math.isfinite(r.aucinf.magnitude)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(time=q([0, 1, 2], "mg"), conc=q([1, 2, 3], "mg/L")), UnitError, "expected a time"),
    (dict(time=q([0, 1, 2], "h"), conc=q([1, 2, 3], "mg")), UnitError,
     "expected a concentration"),
    (dict(time=[0, 1, 2], conc=q([1, 2, 3], "mg/L")), UnitError, "Quantity array"),
    (dict(time=q([0, 2, 1], "h"), conc=q([1, 2, 3], "mg/L")), ValidationError,
     "increasing order"),
    (dict(time=q([0, 1], "h"), conc=q([1, 2, 3], "mg/L")), ValidationError,
     "2 times but 3 concentrations"),
    (dict(time=q([0, 1, 2], "h"), conc=q([1, np.nan, 3], "mg/L")), ValidationError, "finite"),
])
def test_bad_inputs_are_one_line_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        nca(**kwargs)
    with pytest.raises(ValidationError, match="dose kind"):
        NCADose(ureg.Quantity(0, "h"), None, "oral")


# ---- properties ----------------------------------------------------------------------------
@st.composite
def profiles(draw):
    """A rise to a peak and a noisy fall: strictly increasing times, positive values."""
    n = draw(st.integers(5, 14))
    steps = draw(st.lists(st.floats(0.05, 5.0), min_size=n - 1, max_size=n - 1))
    t = np.concatenate([[0.0], np.cumsum(steps)])
    levels = draw(st.lists(st.floats(0.01, 100.0), min_size=n - 1, max_size=n - 1))
    c = np.concatenate([[0.0], levels])
    return t, c


def _all_log_auc(t, c):
    """Log trapezoid wherever both ends are positive and differ, linear elsewhere."""
    total = 0.0
    for t1, t2, c1, c2 in zip(t[:-1], t[1:], c[:-1], c[1:]):
        if c1 > 0 and c2 > 0 and c1 != c2:
            total += (c2 - c1) * (t2 - t1) / math.log(c2 / c1)
        else:
            total += (c1 + c2) / 2 * (t2 - t1)
    return total


@examples(50)
@given(profiles())
def test_auclast_lies_between_the_log_and_the_linear_trapezoid(profile):
    t, c = profile
    auc = nca(q(t, "h"), q(c, "mg/L")).auclast.magnitude
    # the logarithmic mean never exceeds the arithmetic one
    assert _all_log_auc(t, c) * (1 - 1e-12) <= auc <= np.trapezoid(c, t) * (1 + 1e-12)


@examples(40)
@given(profiles(), st.floats(1e-3, 1e3))
def test_scaling_concentrations_scales_areas_and_keeps_the_half_life(profile, factor):
    t, c = profile
    a = nca(q(t, "h"), q(c, "mg/L"), dose="1 mg")
    b = nca(q(t, "h"), q(c * factor, "mg/L"), dose="1 mg")
    assert b.auclast.magnitude == pytest.approx(factor * a.auclast.magnitude, rel=1e-9)
    assert b.cmax.magnitude == pytest.approx(factor * a.cmax.magnitude, rel=1e-12)
    assert b.lambda_z_points == a.lambda_z_points
    if a.lambda_z_points:
        assert b.half_life.magnitude == pytest.approx(a.half_life.magnitude, rel=1e-7)
        assert b.aucinf.magnitude == pytest.approx(factor * a.aucinf.magnitude, rel=1e-7)
        assert b.cl.magnitude == pytest.approx(a.cl.magnitude / factor, rel=1e-7)


@examples(40)
@given(profiles(), st.floats(0.1, 1e3))
def test_shifting_time_with_the_dose_changes_nothing(profile, shift):
    t, c = profile
    a = nca(q(t, "h"), q(c, "mg/L"), dose="1 mg")
    b = nca_profile(q(t + shift, "h"), q(c, "mg/L"),
                    [NCADose(ureg.Quantity(shift, "h"), ureg.Quantity(1, "mg"))]).whole
    assert b.auclast.magnitude == pytest.approx(a.auclast.magnitude, rel=1e-9)
    assert b.tmax.magnitude == pytest.approx(a.tmax.magnitude, rel=1e-9, abs=1e-9)
    assert b.lambda_z_points == a.lambda_z_points
    if a.lambda_z_points:
        assert b.lambda_z.magnitude == pytest.approx(a.lambda_z.magnitude, rel=1e-6)


@examples(40)
@given(st.floats(0.01, 2.0), st.floats(0.1, 1e4), st.integers(4, 30))
def test_any_mono_exponential_is_recovered_exactly(k, c0, n):
    t = np.linspace(0, 5 / k, n)
    r = nca(q(t, "h"), q(c0 * np.exp(-k * t), "mg/L"), dose="1 mg", kind="bolus")
    assert r.lambda_z.magnitude == pytest.approx(k, rel=1e-9)
    assert r.lambda_z_points == n - 1
    assert r.aucinf.magnitude == pytest.approx(c0 / k, rel=1e-9)
