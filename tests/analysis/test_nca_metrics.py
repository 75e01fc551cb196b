"""NCA of simulations, as functions and as metrics, against closed forms of the
one_compartment model (V = 10 L, CL = 10 ln 2 L/day: a half-life of exactly one day, MW
150 kg/mol), and the NCA metrics wherever metrics work: dose-response, sensitivity,
scenario files."""

import csv
import math

import numpy as np
import pytest

import mechsim
from mechsim import ValidationError, ureg
from mechsim.analysis.metrics import Metric
from mechsim.analysis.nca_sources import nca_of_result

V, CL = 10.0, 10 * math.log(2)        # L, L/day
K = CL / V                            # 1/day
TIGHT = dict(rtol=1e-10, atol=1e-14)


@pytest.fixture(scope="module")
def bolus():
    return mechsim.simulate("one_compartment", "100 mg iv", until="12 day", **TIGHT)


@pytest.fixture(scope="module")
def daily():
    """100 mg iv every day for 20 days, then 10 days of washout."""
    return mechsim.simulate("one_compartment", "100 mg iv every 1 day x 20", until="30 day",
                            **TIGHT)


def test_iv_bolus_simulation_gives_the_model_parameters(bolus):
    w = nca_of_result(bolus, "C_mass").whole
    assert w.aucinf.to("mg*day/L").magnitude == pytest.approx(100 / CL, rel=1e-7)
    assert w.cl.to("L/day").magnitude == pytest.approx(CL, rel=1e-7)
    assert w.vz.to("L").magnitude == pytest.approx(V, rel=1e-7)
    assert w.half_life.to("day").magnitude == pytest.approx(1.0, rel=1e-7)
    assert w.c0.to("mg/L").magnitude == pytest.approx(10.0, rel=1e-9)


@pytest.mark.parametrize("text, expected, unit", [
    ("cmax(C_mass)", 10.0, "mg/L"),
    ("tmax(C_mass)", 0.0, "day"),
    ("tlast(C_mass)", 12.0, "day"),
    ("clast(C_mass)", 10 * 2 ** -12, "mg/L"),
    ("auclast(C_mass)", 10 / K * (1 - 2 ** -12), "mg*day/L"),
    ("aucinf(C_mass)", 100 / CL, "mg*day/L"),
    ("lambda_z(C_mass)", K, "1/day"),
    ("half_life(C_mass)", 1.0, "day"),
    ("thalf(C_mass)", 24.0, "h"),
    ("cl(C_mass)", CL, "L/day"),
    ("vz(C_mass)", V, "L"),
])
def test_nca_metrics_of_a_bolus(bolus, text, expected, unit):
    got = Metric.parse(text)(bolus)
    assert got.to(unit).magnitude == pytest.approx(expected, rel=1e-7, abs=1e-12)
    assert str(Metric.parse(text)) == text


def test_interval_metrics_follow_superposition(daily):
    # interval n (from 0) of doses every tau: AUC = D/CL (1 - e^{-k tau (n+1)})
    for n in (0, 4, 19):
        auc = Metric.parse(f"auc_tau(C_mass, {n} day)")(daily).to("mg*day/L").magnitude
        assert auc == pytest.approx(100 / CL * (1 - 2.0 ** -(n + 1)), rel=1e-7)
        cmax = Metric.parse(f"cmax_tau(C_mass, {n} day)")(daily).to("mg/L").magnitude
        assert cmax == pytest.approx(10 * (1 - 2.0 ** -(n + 1)) / 0.5, rel=1e-7)
        cmin = Metric.parse(f"cmin_tau(C_mass, {n} day)")(daily).to("mg/L").magnitude
        assert cmin == pytest.approx(cmax / 2, rel=1e-7)
        assert Metric.parse(f"tmax_tau(C_mass, {n} day)")(daily).magnitude == 0
    # the whole run: total dose / AUC(0-inf) is CL (linear kinetics)
    assert Metric.parse("cl(C_mass)")(daily).to("L/day").magnitude == pytest.approx(CL,
                                                                                     rel=1e-7)


def test_oral_profile_tmax_and_cl_over_f():
    ka, f = 10.0, 0.5                                   # 1/day
    res = mechsim.simulate("one_compartment", "100 mg oral", until="15 day",
                           overrides={"ka": f"{ka} 1/day", "F": str(f)}, every="0.001 day",
                           **TIGHT)
    w = nca_of_result(res, "C_mass").whole
    tmax = math.log(ka / K) / (ka - K)
    assert w.tmax.to("day").magnitude == pytest.approx(tmax, abs=0.0005)
    assert w.cl_label == "CL/F"
    assert w.cl.to("L/day").magnitude == pytest.approx(CL / f, rel=1e-5)


def test_oral_doses_with_a_lag_time_off_the_output_grid():
    """With a 6 h lag the nominal dose times are not on the output grid; the profile is
    continuous there, so the interval boundaries are interpolated and every AUCtau exists.
    Oracle: the closed-form Bateman function with lag, superposed and integrated by quad."""
    from scipy import integrate

    from mechsim.testing import oral_1cpt, superpose

    ka = 10.0                                           # 1/day
    res = mechsim.simulate("one_compartment", "100 mg oral every 1 day x 6", until="10.3 day",
                           overrides={"ka": f"{ka} 1/day", "tlag": "6 h"}, **TIGHT)
    assert not np.isin([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], res.time_days).any()
    intervals = nca_of_result(res, "C_mass").intervals
    def conc(t):
        return float(superpose(lambda s: oral_1cpt(s, 100, V, K, ka, lag=0.25), range(6), t))
    for iv in intervals:
        a = iv.start.to("day").magnitude
        exact = integrate.quad(conc, a, a + 1, points=[a + 0.25], limit=200)[0]
        # 1001 output times over 10.3 days: the linear-up rule on the absorption phase
        assert iv.auctau.to("mg*day/L").magnitude == pytest.approx(exact, rel=1e-3)
        assert not iv.to_end


def test_molar_output_gives_clearance_in_moles_with_a_molar_dose():
    res = mechsim.simulate("one_compartment", "1000 nmol iv", until="12 day", **TIGHT)
    cl = Metric.parse("cl(C)")(res)
    assert cl.to("L/day").magnitude == pytest.approx(CL, rel=1e-7)
    # a dose in mg against nM: no molecular weight in sight, so NaN with the reason
    res = mechsim.simulate("one_compartment", "100 mg iv", until="12 day")
    p = nca_of_result(res, "C")
    assert math.isnan(p.whole.cl.magnitude)
    assert any("give both as mass" in n for n in p.whole.notes)


def test_several_routes_leave_cl_to_the_caller():
    res = mechsim.simulate("one_compartment", "100 mg iv; 50 mg oral at 3 day",
                           until="12 day")
    assert math.isnan(Metric.parse("cl(C_mass)")(res).magnitude)
    only_iv = nca_of_result(res, "C_mass", route="iv")
    assert only_iv.whole.dose.to("mg").magnitude == 100
    with pytest.raises(ValidationError, match="no dose by route 'sc'"):
        nca_of_result(res, "C_mass", route="sc")


@pytest.mark.parametrize("text, message", [
    ("cmax(C_mass, 1 day)", "takes 0 argument"),
    ("auc_tau(C_mass)", "takes 1 argument"),
    ("auc_tau(C_mass, 1 mg)", "must be a time"),
    ("auc_tau(C_mass, 1.5 day)", "no dose at 1.5 d"),
    ("cmax(eliminated)", "eliminated is in nmol, not a concentration"),
    ("cmax(nope)", "no output named 'nope'"),
])
def test_bad_nca_metrics(daily, text, message):
    with pytest.raises(ValidationError, match=message):
        Metric.parse(text)(daily)


def test_dose_response_of_an_nca_metric_is_linear_in_dose():
    dr = mechsim.dose_response("one_compartment", "{dose} iv", "1..100 mg", "aucinf(C_mass)",
                               until="12 day", n=4)
    y = dr.y.to("mg*day/L").magnitude
    assert math.isnan(y[0])                       # no drug: no terminal phase to extrapolate
    assert y[1:] == pytest.approx(dr.x.to("mg").magnitude[1:] / CL, rel=1e-6)


def test_local_sensitivity_of_nca_clearance_is_one_for_cl_and_zero_for_v():
    """CL_nca = CL and t1/2 = ln2 V/CL: their elasticities are exactly 1, 0, -1 and 1."""
    cl, thalf = mechsim.local_sensitivity("one_compartment", "100 mg iv",
                                          ["cl(C_mass)", "half_life(C_mass)"], ["CL", "V"],
                                          until="12 day")
    assert cl.coefficients == pytest.approx([1.0, 0.0], abs=1e-5)
    assert thalf.coefficients == pytest.approx([-1.0, 1.0], abs=1e-5)


def test_sensitivity_checks_nca_metrics_before_any_run():
    with pytest.raises(ValidationError, match="not a concentration"):
        mechsim.local_sensitivity("one_compartment", "100 mg iv", "cmax(eliminated)", ["CL"],
                                  until="1 day")
    with pytest.raises(ValidationError, match="no dose at 2 d"):
        mechsim.local_sensitivity("one_compartment", "100 mg iv", "auc_tau(C_mass, 2 day)",
                                  ["CL"], until="3 day")


def test_scenario_files_take_nca_metrics(tmp_path):
    from mechsim.scenario import read_scenario, run_scenario

    path = tmp_path / "s.toml"
    path.write_text('''
[scenario]
name = "nca_check"
model = "one_compartment"
until = "12 day"
outputs = ["C_mass"]

[arms.iv]
regimen = "100 mg iv"

[metrics]
clearance = "cl(C_mass)"
half_life = "half_life(C_mass)"
''')
    run_scenario(read_scenario(path), tmp_path / "out", progress=False)
    with (tmp_path / "out" / "metrics.csv").open() as fh:
        rows = {r["metric"]: r for r in csv.DictReader(fh)}
    assert float(rows["clearance"]["value"]) == pytest.approx(CL, rel=1e-6)
    assert rows["clearance"]["unit"] == "L/d"
    assert float(rows["half_life"]["value"]) == pytest.approx(1.0, rel=1e-6)


def test_times_in_the_model_time_unit():
    res = mechsim.simulate("phenobarbital", "20 mg iv", until="40 day",
                           overrides={"WGT": "1.5 kg"}, params="phenobarbital_fit")
    w = nca_of_result(res, "C").whole
    pars = mechsim.io.prepare_model("phenobarbital", ["phenobarbital_fit"]).parameters_by_name
    cl = pars["CL_per_kg"].value.to("L/h/kg").magnitude * 1.5
    v = pars["V_per_kg"].value.to("L/kg").magnitude * 1.5
    assert w.half_life.units == ureg.hour
    assert w.half_life.magnitude == pytest.approx(math.log(2) * v / cl, rel=1e-5)
    assert w.cl.to("L/h").magnitude == pytest.approx(cl, rel=1e-5)
    assert np.isfinite(w.vz.magnitude)
