"""Virtual trials: per-patient endpoints, survival summaries, determinism across executors."""

import math
import subprocess
import sys
import textwrap
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import mechsim
from mechsim import ParseError
from mechsim.analysis import best_response, progression_time
from mechsim.analysis.endpoints import progression_times
from mechsim.analysis.survival import hazard_ratio, kaplan_meier, proportion
from mechsim.io.population_file import load_population
from mechsim.scenario import read_scenario
from mechsim.trial import DAYS_PER_MONTH, Trial, TrialArm, run_trial

pytest.importorskip("numba")
pytest.importorskip("lifelines")

ISA = ("10 mg/kg iv over 1 h on days 1,8,15,22 of 28-day cycle x 1 "
       "then on days 1,15 of 28-day cycles")
POM = "4 mg oral on days 1-21 of 28-day cycles"


def small_trial(size=4, **changes) -> Trial:
    trial = Trial(model="cd38_myeloma", population=load_population("icaria_population"),
                  arms=(TrialArm("isa_pd", "Isa-Pd", mechsim.Regimen.parse(f"{ISA}; {POM}"),
                                 size),
                        TrialArm("pd", "Pd", mechsim.Regimen.parse(POM), size)),
                  follow_up="5 month", control="pd")
    return replace(trial, **changes)


@pytest.fixture(scope="module")
def serial():
    return run_trial(small_trial(), workers=1)


def same(a, b) -> None:
    """Two trial results are identical, number for number."""
    assert np.array_equal(a.arm, b.arm)
    assert np.array_equal(a.pfs_days, b.pfs_days)
    assert np.array_equal(a.progressed, b.progressed)
    assert np.array_equal(a.best_reduction, b.best_reduction)
    assert a.columns.keys() == b.columns.keys()
    for name in a.columns:
        assert np.array_equal(a.columns[name], b.columns[name])
    assert a.summary() == b.summary()


# ---- endpoints ---------------------------------------------------------------------------

@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.0, 80.0), min_size=2, max_size=40))
def test_vectorised_progression_equals_the_scalar_rule(values):
    t = np.arange(len(values), dtype=float) * 7.0
    m = np.array(values)
    one = progression_time(mechsim.Quantity(t, "day"), mechsim.Quantity(m, "g/L"))
    many = progression_times(t, np.vstack([m, m[::-1]]))
    assert many[0] == one.to("day").magnitude
    again = progression_time(mechsim.Quantity(t, "day"), mechsim.Quantity(m[::-1], "g/L"))
    assert many[1] == again.to("day").magnitude


def test_trial_endpoints_equal_one_patient_simulated_alone(serial):
    """Patient 2 of the Pd arm, simulated with simulate() and the scalar endpoint functions,
    gives the trial's numbers."""
    trial = serial.trial
    model = mechsim.load_model("cd38_myeloma")
    people = trial.population.sample(model, 4, seed=trial.arm_seed(1))
    overrides = {k: v[2] for k, v in people.quantities().items()}
    res = mechsim.simulate(model, POM, until="5 month", every="1 day", overrides=overrides,
                           method="NDF", rtol=trial.rtol)
    i = np.flatnonzero(serial.arm == "pd")[2]
    pfs = progression_time(res.time, res["M"]).to("day").magnitude
    if math.isfinite(pfs):
        assert serial.progressed[i] and serial.pfs_days[i] == pytest.approx(pfs, rel=1e-9)
        seen = res["M"][res.time.to("day").magnitude <= pfs]
    else:
        assert not serial.progressed[i]
        assert serial.pfs_days[i] == pytest.approx(ureg_days("5 month"))
        seen = res["M"]
    assert serial.best_reduction[i] == pytest.approx(best_response(seen), rel=1e-9)


def ureg_days(text):
    return mechsim.Quantity(text).to("day").magnitude


def test_adding_isatuximab_never_shortens_a_patients_pfs():
    """MODELS.md: with the same virtual patients (paired arms), Isa-Pd gives each patient
    at least the PFS and the best response of Pd."""
    result = run_trial(small_trial(size=12, paired=True, follow_up="12 month"))
    isa, pd = result.arm == "isa_pd", result.arm == "pd"
    assert np.array_equal(result.columns["k_pd"][isa], result.columns["k_pd"][pd])
    assert np.all(result.pfs_days[isa] >= result.pfs_days[pd])
    assert np.all(result.best_reduction[isa] >= result.best_reduction[pd] - 1e-9)
    assert result.progressed[pd].any()  # the property is not vacuous


def test_accrual_censors_administratively():
    result = run_trial(small_trial(size=8, accrual="3 month"))
    end = ureg_days("5 month")
    censored = ~result.progressed
    assert np.all(result.pfs_days <= end)
    assert np.all(result.pfs_days[censored] >= end - ureg_days("3 month"))
    assert np.any(result.pfs_days[censored] < end)  # entries spread the cut-off times


# ---- survival statistics against independent computations -------------------------------

def product_limit(times, events):
    """Kaplan-Meier by hand: S after each distinct event time."""
    out = {}
    s = 1.0
    for t in np.unique(times[events]):
        at_risk = np.sum(times >= t)
        deaths = np.sum((times == t) & events)
        s *= 1 - deaths / at_risk
        out[t] = s
    return out


def test_kaplan_meier_matches_the_product_limit_formula():
    rng = np.random.default_rng(0)
    t = np.round(rng.exponential(10, 60), 1)
    e = rng.random(60) < 0.7
    km = kaplan_meier(t, e)
    expected = product_limit(t, e)
    for time, s in expected.items():
        k = np.flatnonzero(km.time == time)[0]
        assert km.survival[k] == pytest.approx(s, rel=1e-12)
    below = [time for time, s in expected.items() if s <= 0.5]
    assert km.median == below[0]
    assert np.all(km.lower <= km.survival + 1e-12) and np.all(km.upper >= km.survival - 1e-12)
    assert km.median_lower <= km.median <= km.median_upper


def test_numbers_at_risk_count_patients_without_an_event_or_censoring_before_each_time():
    t = np.array([1.0, 2.0, 2.0, 3.5, 5.0, 8.0])
    e = np.array([1, 0, 1, 1, 0, 1])
    km = kaplan_meier(t, e)
    # at time s: patients whose time (event or censoring) is not before s
    assert km.at_risk([0, 2, 2.5, 5, 9]).tolist() == [6, 5, 3, 2, 0]


def test_the_kaplan_meier_figure_prints_the_numbers_at_risk_under_each_tick():
    import matplotlib

    matplotlib.use("Agg")
    from mechsim.plotting import plot_kaplan_meier

    rng = np.random.default_rng(3)
    curves = {arm: kaplan_meier(rng.exponential(scale, 200).clip(max=24), np.ones(200))
              for arm, scale in (("A", 10.0), ("B", 5.0))}
    ax = plot_kaplan_meier(curves)
    ticks = ax.get_xticks()
    texts = [x.get_text() for x in ax.texts]
    assert "at risk" in texts and "A" in texts and "B" in texts
    for arm, km in curves.items():
        row = [str(int(n)) for n in km.at_risk(ticks)]
        assert row[0] == "200"
        position = texts.index(arm) + 1  # each arm's label, then its numbers
        assert texts[position:position + len(row)] == row
    # all of the table is inside the saved figure, without a tight_layout by the caller
    fig = ax.figure
    fig.canvas.draw()
    inside = fig.bbox
    for text in ax.texts:
        box = text.get_window_extent()
        assert box.y0 >= inside.y0 and box.x0 >= inside.x0, text.get_text()
    fig.clf()


def test_cox_hazard_ratio_recovers_a_known_ratio():
    rng = np.random.default_rng(1)
    n = 3000
    treated = np.arange(2 * n) < n
    t = rng.exponential(np.where(treated, 1 / 0.6, 1.0))
    censor = rng.uniform(0.5, 3.0, 2 * n)
    hr = hazard_ratio(np.minimum(t, censor), t <= censor, treated)
    assert hr.lower < 0.6 < hr.upper
    assert hr.value == pytest.approx(0.6, rel=0.08)
    assert hr.p < 1e-10


def test_proportion_is_clopper_pearson():
    rate, lo, hi = proportion(35, 100)
    assert rate == 0.35
    assert lo == pytest.approx(stats.beta.ppf(0.025, 35, 66), rel=1e-9)
    assert hi == pytest.approx(stats.beta.ppf(0.975, 36, 65), rel=1e-9)


# ---- determinism: workers, chunks, processes, Dask ----------------------------------------

def test_same_seed_same_results_whatever_the_workers_or_chunks(serial):
    same(serial, run_trial(small_trial(), workers=2, chunk_size=1))
    same(serial, run_trial(small_trial(), workers=2, chunk_size=3))
    with ProcessPoolExecutor(max_workers=2) as pool:
        same(serial, run_trial(small_trial(), executor=pool, chunk_size=2))


def test_dask_local_cluster_gives_the_serial_result(serial):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        same(serial, run_trial(small_trial(), executor=client, chunk_size=1))


def test_different_seeds_give_different_patients(serial):
    other = run_trial(small_trial(seed=12345), workers=1)
    assert not np.array_equal(serial.columns["k_pd"], other.columns["k_pd"])


# ---- tables and scenario files -----------------------------------------------------------

def test_tables(serial, tmp_path):
    serial.write_patients(tmp_path / "patients.csv")
    serial.write_summary(tmp_path / "summary.csv")
    lines = (tmp_path / "patients.csv").read_text().splitlines()
    assert len(lines) == 1 + 8
    assert lines[0].startswith("arm,patient,") and "pfs [month]" in lines[0]
    # one header convention: units in brackets, never in parentheses
    assert "(" not in lines[0] and all(c.endswith("]") or "[" not in c
                                       for c in lines[0].split(","))
    rows = serial.summary()
    # counts are written as integers
    counts = [r["simulated"] for r in rows if r["endpoint"] in ("patients", "PFS events")]
    assert counts and all(c.isdigit() for c in counts)
    orr = next(r for r in rows if r["arm"] == "Pd" and r["endpoint"] == "ORR (>= PR)")
    pd = serial.arm == "pd"
    assert float(orr["simulated"]) == np.mean(serial.best_reduction[pd] >= 0.5)
    km = serial.kaplan_meier("pd")
    assert km.n == 4 and km.time.max() <= 5.0 + 1e-9
    assert np.all(serial.pfs_days / DAYS_PER_MONTH <= 5 + 1e-9)


def scenario_file(tmp_path, trial_body: str) -> str:
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent(f"""
        [scenario]
        model = "cd38_myeloma"
        until = "4 weeks"
        every = "1 day"
        outputs = ["M"]
        seed = 11

        [arms.isa_pd]
        label = "Isa-Pd"
        regimen = "{ISA}; {POM}"

        [arms.pd]
        label = "Pd"
        regimen = "{POM}"
        """) + textwrap.dedent(trial_body))
    return str(path)


TRIAL = """
    [trial]
    population = "icaria_population"
    size = 3
    follow_up = "3 months"
    accrual = "1 month"
    control = "pd"

    [trial.published]
    median_pfs = { isa_pd = "11.53 month", pd = "6.47 month" }
    orr = { isa_pd = 0.60, pd = 0.35 }
    hazard_ratio = 0.596
    """


def test_scenario_trial_is_read(tmp_path):
    trial = read_scenario(scenario_file(tmp_path, TRIAL)).trial
    assert [a.size for a in trial.arms] == [3, 3]
    assert trial.seed == 11 and trial.control_arm == "pd"
    assert dict(trial.published.median_pfs_months)["pd"] == pytest.approx(6.47)


@pytest.mark.parametrize(("change", "fragment"), [
    (("size = 3", "size = 0"), "positive integer"),
    (("size = 3", "size = { isa_pd = 3 }"), "missing pd"),
    (("control = \"pd\"", "control = \"placebo\""), "not an arm"),
    (("follow_up = \"3 months\"", "follow_up = \"3 mL\""), "positive time"),
    (("accrual = \"1 month\"", "accrual = \"4 month\""), "shorter than the follow-up"),
    (("population = \"icaria_population\"", "population = \"nowhere.toml\""), "no such file"),
    (("orr = { isa_pd = 0.60, pd = 0.35 }", "orr = { isa_pd = 60, pd = 0.35 }"), "[0, 1]"),
    (("hazard_ratio = 0.596", "hazard_ratio = 0.596\nmedian = 3"), "unknown key 'median'"),
])
def test_bad_trial_tables(tmp_path, change, fragment):
    old, new = change
    assert old in TRIAL
    path = scenario_file(tmp_path, TRIAL.replace(old, new))
    with pytest.raises(mechsim.MechsimError) as info:
        read_scenario(path)
    assert fragment in str(info.value)


def test_cli_run_writes_the_trial_table_and_figure(tmp_path):
    path = scenario_file(tmp_path, TRIAL)
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "mechsim", "run", path, "--out", str(out),
                           "--workers", "2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for name in ("trial_patients.csv", "trial_summary.csv", "km.png", "provenance.json"):
        assert (out / name).is_file()
    assert "median PFS" in done.stdout and "| 6.47" in done.stdout


@pytest.mark.parametrize("extra", [["--workers", "0"],
                                   ["--scheduler", "tcp://127.0.0.1:9"],
                                   ["--trial-size", "-3"]])
def test_cli_scale_out_errors_are_one_line_and_write_nothing(tmp_path, extra):
    path = scenario_file(tmp_path, TRIAL)
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "mechsim", "run", path, "--out", str(out),
                           *extra], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("mechsim: error:") and len(done.stderr.splitlines()) == 1
    assert not out.exists()
    assert not list(tmp_path.glob(".run.*"))


def test_scenario_with_bad_published_time(tmp_path):
    path = scenario_file(tmp_path, TRIAL.replace('pd = "6.47 month"', 'pd = "6.47 mg"'))
    with pytest.raises(ParseError, match="a time such as"):
        read_scenario(path)


def test_a_patient_who_outgrows_the_solver_after_progressing_keeps_a_valid_pfs():
    """Every solver stops near day 952 for an uncontrolled tumour (see test_batch); the
    patient progressed within weeks, so the PFS stands and the stop is counted."""
    trial = Trial(model="cd38_myeloma",
                  population=mechsim.Population(name="fixed", model="cd38_myeloma"),
                  arms=(TrialArm("isa_pd", "Isa-Pd", mechsim.Regimen.parse(f"{ISA}; {POM}"),
                                 1),),
                  overrides=(("M0", "18 g/L"), ("k_pd", "0.01 1/day"),
                             ("k_adcc", "0.005 1/day"), ("k_adcp", "0 1/day"),
                             ("k_cdc", "0 1/day"), ("k_apo", "0 1/day"),
                             ("kg", "0.037 1/day")),
                  follow_up="1000 day", rtol=1e-6, seed=1)
    result = run_trial(trial, workers=1)
    assert result.solver_stops_after_progression == 1
    alone = mechsim.simulate("cd38_myeloma", f"{ISA}; {POM}",
                             params=["isatuximab", "pomalidomide_dex"],
                             overrides=dict(trial.overrides), until="120 day", every="1 day",
                             rtol=1e-6)
    expected = progression_time(alone.time, alone["M"]).to("day").magnitude
    assert result.progressed[0]
    assert result.pfs_days[0] == pytest.approx(expected, rel=1e-4)


# ---- a second disease through the same machinery -------------------------------------------
class _Grade(int):
    """A response category of the toy endpoints below (0 none, 1 shrinkage >= 30 %)."""

    def at_least(self, other) -> bool:
        return self >= other


@dataclass(frozen=True)
class BurdenDoubling:
    """Toy endpoints on the tumour burden N, written against the Endpoints interface only:
    response = burden down >= 30 % from baseline; progression = burden at twice its nadir."""

    name: ClassVar[str] = "burden_doubling"
    rates: ClassVar = (("shrinkage >= 30 %", "shrinkage", _Grade(1)),)
    marker: str = "N"
    unit: str = ""

    def progression_times(self, t, values):
        nadir = np.minimum.accumulate(values, axis=1)
        above = values >= 2 * nadir
        return np.where(above.any(axis=1), t[above.argmax(axis=1)], np.inf)

    def best_response(self, t, values, until):
        seen = np.where(t[None, :] <= until[:, None], values, np.inf).min(axis=1)
        return np.maximum(1 - seen / values[:, 0], 0.0)

    def category(self, response):
        return _Grade(response >= 0.3)


def test_a_second_disease_needs_only_its_endpoints():
    trial = small_trial(size=6, follow_up="6 month", endpoints=BurdenDoubling())
    result = run_trial(trial, workers=1)
    rows = {(r["arm"], r["endpoint"]): r for r in result.summary()}
    assert ("Pd", "shrinkage >= 30 %") in rows and ("Pd", "ORR (>= PR)") not in rows
    # the same numbers by hand from the simulated burden of the Pd arm
    model = mechsim.load_model("cd38_myeloma")
    people = trial.population.sample(model, 6, seed=trial.arm_seed(1))
    batch = mechsim.simulate_many(model, POM, parameters=people.quantities(),
                                  until="6 month", every="1 day", rtol=trial.rtol)
    burden = batch["N"].magnitude
    t = batch.time_days
    progression = BurdenDoubling().progression_times(t, burden)
    time = np.minimum(progression, t[-1])
    pd = result.arm == "pd"
    np.testing.assert_array_equal(result.pfs_days[pd], time)
    shrunk = np.mean(BurdenDoubling().best_response(t, burden, time) >= 0.3)
    assert float(rows[("Pd", "shrinkage >= 30 %")]["simulated"]) == pytest.approx(shrunk)
