"""Local and global (Sobol) sensitivity against known answers.

Local coefficients are compared with derivatives of closed-form one-compartment PK; Sobol
indices with the analytic variance decompositions of test functions, each written as a
mechsim model file whose metric is exactly the function: a species y with ``-> y`` at the
constant rate ``k * f(parameters)`` (k = 1/day), so ``value(y, 1 day) = f``.
"""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

import mechsim
from mechsim import UnitError, ValidationError
from mechsim.analysis.sensitivity import (
    LocalSensitivity,
    SobolResult,
    local_sensitivity,
    ranges_from_params,
    sobol_indices,
)
from mechsim.io import prepare_model

DOSE = 1000.0  # nmol


def one_compartment(params=None):
    """(V in L, CL in L/day) of the one_compartment model with the given parameter set."""
    model = prepare_model("one_compartment", params)
    return (model.parameters_by_name["V"].value.to("L").magnitude,
            model.parameters_by_name["CL"].value.to("L/day").magnitude)


# ---- local sensitivity ------------------------------------------------------------------------
@pytest.mark.parametrize("params, every", [(None, "0.01 day"),
                                           ("one_compartment_typical", None)],
                         ids=["long-window", "finite-window"])
def test_local_auc_matches_closed_form(params, every):
    """AUC(0, T) = D/CL (1 - exp(-kT)) with k = CL/V, so with x = kT and e = exp(-x):
    S_CL = -1 + x e/(1 - e) and S_V = -x e/(1 - e).  Model defaults (half-life 1 day): the
    window of 40 days is 28 half-lives and S_CL = -1, S_V = 0; the typical IgG (half-life
    10.4 days) gives S_CL = -0.80, S_V = -0.20."""
    V, CL = one_compartment(params)
    x = CL / V * 40
    e = math.exp(-x)
    ls = local_sensitivity("one_compartment", f"{DOSE} nmol iv", "auc(C, 0 day, 40 day)",
                           ["CL", "V"], until="40 day", params=params, every=every)
    assert isinstance(ls, LocalSensitivity)
    assert ls.nominal.to("nM*day").magnitude == pytest.approx(DOSE / CL * (1 - e), rel=1e-5)
    assert ls["CL"] == pytest.approx(-1 + x * e / (1 - e), abs=1e-4)
    assert ls["V"] == pytest.approx(-x * e / (1 - e), abs=1e-4)
    if params is None:
        assert ls["CL"] == pytest.approx(-1, abs=1e-4)
        assert ls["V"] == pytest.approx(0, abs=1e-4)


def test_local_max_after_bolus():
    """max(C) = D/V just after the bolus: S_V = -1, S_CL = 0."""
    ls = local_sensitivity("one_compartment", f"{DOSE} nmol iv", "max(C)", ["CL", "V"],
                           until="5 day", params="one_compartment_typical")
    assert ls["V"] == pytest.approx(-1, abs=1e-6)
    assert ls["CL"] == pytest.approx(0, abs=1e-9)
    assert [row[0] for row in ls.table()] == ["V", "CL"]  # sorted by |S|


def test_local_value_at_time_and_derivatives():
    """C(t) = D/V exp(-CL t/V): S_CL = -kt, S_V = kt - 1; dM/dln p = S * M."""
    V, CL = one_compartment("one_compartment_typical")
    kt = CL / V * 2
    ls = local_sensitivity("one_compartment", f"{DOSE} nmol iv", "value(C, 2 day)",
                           ["V", "CL"], until="2 day", params="one_compartment_typical")
    assert ls["CL"] == pytest.approx(-kt, abs=1e-6)
    assert ls["V"] == pytest.approx(kt - 1, abs=1e-6)
    c = DOSE / V * math.exp(-kt)
    assert ls.nominal.to("nM").magnitude == pytest.approx(c, rel=1e-8)
    i = ls.parameters.index("CL")
    assert ls.derivatives[i].to("nM").magnitude == pytest.approx(-kt * c, rel=1e-5)


def test_local_default_parameters_several_metrics_and_overrides():
    """None perturbs every nonzero parameter (tlag = 0 is left out); several metrics come
    from one set of runs; an override moves the nominal point."""
    auc, peak = local_sensitivity("one_compartment", "100 mg iv", ["auc(C_mass)", "max(C_mass)"],
                                  None, until="3 day", overrides={"CL": "2 L/day"})
    assert set(auc.parameters) == {"MW", "V", "CL", "ka", "F"}
    assert auc["ka"] == pytest.approx(0, abs=1e-9)   # iv dose: absorption plays no part
    assert auc["F"] == pytest.approx(0, abs=1e-9)
    assert auc["MW"] == pytest.approx(0, abs=1e-6)   # mg in, mg/L out: MW cancels
    assert peak["V"] == pytest.approx(-1, abs=1e-6)
    res = mechsim.simulate("one_compartment", "100 mg iv", until="3 day",
                           overrides={"CL": "2 L/day"})
    assert peak.nominal.to("mg/L").magnitude == pytest.approx(
        mechsim.Metric.parse("max(C_mass)")(res).to("mg/L").magnitude, rel=1e-9)


def test_local_oral_route_parameters():
    """Oral dose: AUC = F D / CL, whatever ka (long window).  F = 1 cannot be stepped up, so
    its difference is one-sided (backward, second order)."""
    ls = local_sensitivity("one_compartment", "1000 nmol oral", "auc(C, 0 day, 60 day)",
                           ["F", "ka", "CL"], until="60 day", every="0.01 day")
    assert dict(zip(ls.parameters, ls.schemes)) == {"F": "backward", "ka": "central",
                                                    "CL": "central"}
    assert "backward difference" in str(ls)
    assert ls["F"] == pytest.approx(1, abs=1e-6)
    assert ls["CL"] == pytest.approx(-1, abs=1e-4)
    assert ls["ka"] == pytest.approx(0, abs=1e-4)


# ---- Sobol: known answers ---------------------------------------------------------------------
def constant_rate_model(expression: str, names: list[str]) -> str:
    params = "\n".join(f'{n} = "0.5"' for n in names)
    return f"""
[model]
name = "known_answer"
[parameters]
{params}
k = "1 1/day"
[species.y]
unit = ""
initial = 0
[reactions.source]
equation = "-> y"
rate = "k*({expression})"
"""


def assert_within_ci(result: SobolResult, s1: dict, st: dict, slack: float = 1e-9):
    for name, value in s1.items():
        low, high = result.interval(name, "S1")
        assert low - slack <= value <= high + slack, (name, "S1", value, low, high)
    for name, value in st.items():
        low, high = result.interval(name, "ST")
        assert low - slack <= value <= high + slack, (name, "ST", value, low, high)


def test_sobol_additive_known_answer(write_model):
    """f = a + 2b + 0c with a, b, c ~ U(0, 1): Var = 1/12 + 4/12, no interactions, so
    S1 = ST = (1/5, 4/5, 0)."""
    path = write_model(constant_rate_model("a + 2*b + 0*c", ["a", "b", "c"]))
    sr = sobol_indices(path, None, "value(y, 1 day)", {n: (0, 1) for n in "abc"},
                       until="1 day", every="1 day", n=1024, scale="linear", seed=1)
    exact = {"a": 0.2, "b": 0.8, "c": 0.0}
    assert_within_ci(sr, exact, exact)
    for name, value in exact.items():
        i = sr.index(name)
        assert sr.S1[i] == pytest.approx(value, abs=0.03)
        assert sr.ST[i] == pytest.approx(value, abs=0.03)
    assert sr.runs == 1024 * 5
    assert sr.values.magnitude.mean() == pytest.approx(1.5, abs=0.01)   # E f = 1/2 + 1


def test_sobol_interaction_known_answer(write_model):
    """An Ishigami-like function with an interaction, from the allowed operations:
    f = x1 + x2**2 + x1*x3 with x1, x2, x3 ~ U(-1, 1) independent.

    With E x = 0, E x² = 1/3, E x⁴ = 1/5, the ANOVA terms are f1 = x1, f2 = x2² - 1/3,
    f3 = 0, f13 = x1 x3, so V1 = 1/3, V2 = 1/5 - 1/9 = 4/45, V3 = 0, V13 = 1/9 and
    V = 8/15.  Hence S1 = (5/8, 1/6, 0) and ST = (5/6, 1/6, 5/24): x3 acts only through its
    interaction with x1, like x3 in the Ishigami function."""
    path = write_model(constant_rate_model("x1 + x2**2 + x1*x3", ["x1", "x2", "x3"]))
    sr = sobol_indices(path, None, "value(y, 1 day)", {n: ("-1", "1") for n in
                                                       ("x1", "x2", "x3")},
                       until="1 day", every="1 day", n=1024, scale="linear", seed=2)
    s1 = {"x1": 5 / 8, "x2": 1 / 6, "x3": 0.0}
    st = {"x1": 5 / 6, "x2": 1 / 6, "x3": 5 / 24}
    assert_within_ci(sr, s1, st)
    i3 = sr.index("x3")
    assert sr.ST[i3] - sr.ST_conf[i3] > 0.1   # the interaction is detected
    assert [row[0] for row in sr.table()] == ["x1", "x3", "x2"]   # sorted by ST


def test_sobol_log_uniform_sampling(write_model):
    """f = a + b with a log-uniform on [1, 100] and b uniform on [0, 100]:
    Var a = (H² - L²)/(2 ln(H/L)) - ((H - L)/ln(H/L))², Var b = 100²/12, S_a = Va/(Va + Vb)
    (0.428; it would be 0.495 if a were sampled uniformly)."""
    path = write_model(constant_rate_model("a + b", ["a", "b"]))
    sr = sobol_indices(path, None, "value(y, 1 day)", {"a": (1, 100), "b": "0..100"},
                       until="1 day", every="1 day", n=1024, scale={"b": "linear"}, seed=3)
    r = math.log(100)
    va = (100**2 - 1) / (2 * r) - (99 / r) ** 2
    vb = 100**2 / 12
    sa = va / (va + vb)
    assert_within_ci(sr, {"a": sa, "b": 1 - sa}, {"a": sa, "b": 1 - sa})
    assert sr.ST[sr.index("a")] == pytest.approx(sa, abs=0.03)
    a = sr.samples[:, sr.index("a")]
    assert a.min() >= 1 and a.max() <= 100
    assert np.mean(a < 10) == pytest.approx(0.5, abs=0.02)   # 10 is the log-midpoint
    assert sr.scales == ("log", "linear")


# ---- Sobol: API -------------------------------------------------------------------------------
RANGES = {"V": ("1.5 L", "6 L"), "CL": ("0.1 L/day", "0.4 L/day")}


def small_run(**kw):
    args = dict(until="10 day", every="1 day", n=16, params="one_compartment_typical")
    args.update(kw)
    return sobol_indices("one_compartment", "1000 nmol iv", "value(C, 10 day)",
                         args.pop("ranges", RANGES), **args)


def test_sobol_seed_reproducible():
    a, b, c = small_run(seed=5), small_run(seed=5), small_run(seed=6)
    np.testing.assert_array_equal(a.S1, b.S1)
    np.testing.assert_array_equal(a.ST_conf, b.ST_conf)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert not np.array_equal(a.samples, c.samples)
    fresh = small_run(seed=None)
    again = small_run(seed=fresh.seed)
    np.testing.assert_array_equal(fresh.S1, again.S1)


def test_sobol_units_and_range_forms():
    """Bounds in other units and as 'LOW..HIGH UNIT' text sample the same values."""
    a = small_run()
    b = small_run(ranges={"V": "1500..6000 mL", "CL": ("0.1 L/day", "16.666666666666668 mL/h")})
    np.testing.assert_allclose(a.S1, b.S1, rtol=1e-9)
    assert b.low[0].units == mechsim.ureg.L   # reported in the model's unit
    assert a.samples[:, 0].min() >= 1.5 and a.samples[:, 0].max() <= 6


def test_ranges_from_params_and_names():
    ranges = ranges_from_params("one_compartment", ["CL", "V"], factor=2,
                                params="one_compartment_typical")
    assert ranges["CL"][0].to("L/day").magnitude == pytest.approx(0.1)
    assert ranges["CL"][1].to("L/day").magnitude == pytest.approx(0.4)
    assert ranges["V"][1].to("L").magnitude == pytest.approx(6)
    by_name = small_run(ranges=["V", "CL"])
    by_dict = small_run()
    np.testing.assert_allclose(by_name.ST, by_dict.ST, rtol=1e-9)
    everything = ranges_from_params("one_compartment")
    assert "tlag" not in everything and "V" in everything   # zero values have no factor range


def test_sobol_several_metrics_and_workers():
    serial = sobol_indices("one_compartment", "1000 nmol iv",
                           ["value(C, 10 day)", "max(C)"], RANGES, until="10 day",
                           every="1 day", n=16, params="one_compartment_typical")
    parallel = sobol_indices("one_compartment", "1000 nmol iv",
                             ["value(C, 10 day)", "max(C)"], RANGES, until="10 day",
                             every="1 day", n=16, params="one_compartment_typical", workers=2)
    for s, p in zip(serial, parallel):
        np.testing.assert_array_equal(s.values.magnitude, p.values.magnitude)
        np.testing.assert_array_equal(s.ST, p.ST)
    peak = serial[1]
    assert peak.ST[peak.index("CL")] == 0.0   # max(C) = D/V: CL plays no part
    assert peak.S1[peak.index("V")] == pytest.approx(1, abs=0.15)


def test_sobol_constant_metric_warns():
    with pytest.warns(UserWarning, match="does not vary"):
        sr = sobol_indices("one_compartment", "1000 nmol iv", "max(C)", {"CL": RANGES["CL"]},
                           until="1 day", n=8)
    assert sr.S1.tolist() == [0.0] and sr.ST.tolist() == [0.0]


# ---- output: tables, csv, figures -------------------------------------------------------------
def test_tables_csv_and_plots(tmp_path):
    ls = local_sensitivity("one_compartment", "1000 nmol iv", "value(C, 2 day)", ["V", "CL"],
                           until="2 day", params="one_compartment_typical")
    sr = small_run()
    assert "value(C, 2 d)" in str(ls) and "CL" in str(sr)
    ls.to_csv(tmp_path / "local.csv")
    sr.to_csv(tmp_path / "sobol.csv")
    assert (tmp_path / "local.csv").read_text().startswith("parameter,value,unit,coefficient")
    assert len((tmp_path / "sobol.csv").read_text().splitlines()) == 3

    ax = ls.plot()
    assert "value(C, 2 d) [nM]" in ax.get_title()
    assert "dM/M" in ax.get_xlabel()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[-1].startswith("V = 3 L")   # largest |S| drawn on top
    ax.figure.savefig(tmp_path / "tornado.png")
    plt.close(ax.figure)

    _, ax = plt.subplots()
    assert sr.plot(ax=ax) is ax
    assert "Sobol index" in ax.get_ylabel() and "value(C, 10 d)" in ax.get_title()
    assert any(t.get_text().startswith("CL") for t in ax.get_xticklabels())
    ax.figure.savefig(tmp_path / "sobol.png")
    plt.close(ax.figure)
    assert (tmp_path / "tornado.png").stat().st_size > 1000


def test_results_are_frozen():
    sr = small_run()
    with pytest.raises(AttributeError):
        sr.n = 3
    with pytest.raises(ValueError):
        sr.S1[0] = 1.0


# ---- errors: one line, before any simulation --------------------------------------------------
@pytest.fixture
def no_simulation(monkeypatch):
    """Fail the test if anything reaches the integrator."""
    import mechsim.solvers

    def forbidden(*args, **kwargs):
        raise AssertionError("a simulation ran before the error was raised")
    monkeypatch.setattr(mechsim.solvers, "solve", forbidden)


LOCAL = dict(model="one_compartment", regimen="1000 nmol iv", metric="max(C)",
             parameters=["CL"], until="1 day")


@pytest.mark.parametrize("change, error, text", [
    ({"parameters": ["CL", "Vd"]}, ValidationError, "unknown parameter 'Vd'"),
    ({"parameters": ["CL", "CL"]}, ValidationError, "listed twice"),
    ({"parameters": ["tlag"]}, ValidationError, "needs a nonzero value"),
    ({"metric": "peak(C)"}, ValidationError, "unknown metric 'peak'"),
    ({"metric": "max(Cp)"}, ValidationError, "no output named 'Cp'"),
    ({"metric": "value(C, 3 day)"}, ValidationError, "outside the run"),
    ({"metric": "trough(C, 0.5 day)"}, ValidationError, "no dose at 0.5 d"),
    ({"metric": "time_above(C, 2 mg)"}, UnitError, "does not match the unit"),
    ({"relative_step": 0}, ValidationError, "relative_step"),
    ({"atol": [1e-12, 1e-12]}, ValidationError, "one per state"),
    ({"rtol": 0}, ValidationError, "rtol"),
    ({"regimen": "10 mg/kg iv"}, mechsim.RegimenError, "body weight"),
    ({"until": "1 L"}, UnitError, "must be a time"),
])
def test_local_errors(no_simulation, change, error, text):
    args = dict(LOCAL, **change)
    with pytest.raises(error, match=text) as info:
        local_sensitivity(args.pop("model"), args.pop("regimen"), args.pop("metric"),
                          args.pop("parameters"), **args)
    assert "\n" not in str(info.value)


SOBOL = dict(model="one_compartment", regimen="1000 nmol iv", metric="max(C)",
             ranges={"CL": ("0.1 L/day", "0.4 L/day")}, until="1 day")


@pytest.mark.parametrize("change, error, text", [
    ({"ranges": {"Vd": ("1 L", "2 L")}}, ValidationError, "unknown parameter 'Vd'"),
    ({"ranges": ["CL", "Vd"]}, ValidationError, "unknown parameter 'Vd'"),
    ({"ranges": {"CL": ("0.4 L/day", "0.1 L/day")}}, ValidationError, "need LOW < HIGH"),
    ({"ranges": {"CL": ("0.1 L/day", "0.1 L/day")}}, ValidationError, "need LOW < HIGH"),
    ({"ranges": {"CL": ("0.1 L", "0.4 L")}}, UnitError, "must have the dimension of"),
    ({"ranges": {"CL": ("0.1 L/day", "furlongs")}}, UnitError, "range of CL"),
    ({"ranges": {"CL": "0.1 L/day"}}, ValidationError, "expected"),
    ({"ranges": {"CL": ("0.1 L/day", "0.2 L/day", "0.3 L/day")}}, ValidationError,
     "expected"),
    ({"ranges": {}}, ValidationError, "at least one"),
    ({"ranges": {"F": (-0.5, 1)}}, ValidationError, "log-uniform sampling needs positive"),
    ({"ranges": {"F": (0.5, 1.5)}, "regimen": "1000 nmol oral"}, ValidationError,
     "bioavailability is 1.[0-9]+ .*sample F = 1"),
    ({"ranges": {"V": (-1, 1)}, "scale": "linear"}, UnitError, "dimension"),
    ({"scale": "logit"}, ValidationError, "'log' or 'linear'"),
    ({"scale": {"V": "linear"}}, ValidationError, "has no range"),
    ({"metric": "nadir(C, 2 day, 1 day)"}, ValidationError, "outside the run"),
    ({"metric": "auc(X)"}, ValidationError, "no output named 'X'"),
    ({"n": 100}, ValidationError, "power of 2.*64 or 128"),
    ({"n": 1}, ValidationError, "power of 2"),
    ({"confidence": 1.5}, ValidationError, "confidence"),
    ({"seed": -1}, ValidationError, "seed"),
    ({"workers": 0}, ValidationError, "workers"),
    ({"factor": 0.5, "ranges": ["CL"]}, ValidationError, "factor must be a number > 1"),
])
def test_sobol_errors(no_simulation, change, error, text):
    args = dict(SOBOL, **change)
    with pytest.raises(error, match=text) as info:
        sobol_indices(args.pop("model"), args.pop("regimen"), args.pop("metric"),
                      args.pop("ranges"), **args)
    assert "\n" not in str(info.value)
