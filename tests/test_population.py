"""Population files and sampling: distributions, bounds, correlations, covariates, seeds."""

import math
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import mechsim
from mechsim import ParseError, ValidationError
from mechsim.io.population_file import load_population, read_population

N = 20_000


@pytest.fixture(scope="module")
def one_cpt():
    return mechsim.load_model("one_compartment")


def population(tmp_path, body: str, name: str = "pop.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return read_population(path)


def test_lognormal_median_and_cv(tmp_path, one_cpt):
    pop = population(tmp_path, """
        [meta]
        seed = 1
        [variability]
        CL = { distribution = "lognormal", cv = "40 %" }
        V = { distribution = "lognormal", median = "5 L", omega = 0.2 }
        """)
    people = pop.sample(one_cpt, N)
    q = people.quantities()
    cl = q["CL"].to("L/day").magnitude
    typical = one_cpt.parameters_by_name["CL"].value.to("L/day").magnitude
    omega = math.sqrt(math.log(1 + 0.4 ** 2))
    logs = np.log(cl / typical)
    # mean of log within 4 standard errors of 0, sd of log within 3 %
    assert abs(logs.mean()) < 4 * omega / math.sqrt(N)
    assert logs.std() == pytest.approx(omega, rel=0.03)
    # the CV of a log-normal is sqrt(exp(omega^2) - 1): 40 % back
    assert cl.std() / cl.mean() == pytest.approx(0.4, rel=0.05)
    v = q["V"].to("L").magnitude
    assert np.median(v) == pytest.approx(5.0, rel=0.01)
    assert np.log(v).std() == pytest.approx(0.2, rel=0.03)


def test_normal_uniform_and_bounds(tmp_path, one_cpt):
    pop = population(tmp_path, """
        [meta]
        seed = 2
        [variability]
        V = { distribution = "normal", mean = "10 L", sd = "2 L", lower = "8 L", upper = "20 L" }
        ka = { distribution = "uniform", lower = "0.5 1/day", upper = "2 1/day" }
        F = { distribution = "normal", mean = 0.8, cv = "10 %", upper = 1 }
        """)
    q = pop.sample(one_cpt, N).quantities()
    v = q["V"].to("L").magnitude
    assert v.min() >= 8 and v.max() <= 20
    # a normal truncated to [8, 20]: compare with scipy's truncated normal
    expected = stats.truncnorm((8 - 10) / 2, (20 - 10) / 2, loc=10, scale=2)
    assert v.mean() == pytest.approx(expected.mean(), abs=4 * expected.std() / math.sqrt(N))
    ka = q["ka"].to("1/day").magnitude
    assert ka.min() >= 0.5 and ka.max() <= 2
    assert ka.mean() == pytest.approx(1.25, abs=4 * (1.5 / math.sqrt(12)) / math.sqrt(N))
    f = q["F"].to("").magnitude
    assert f.max() <= 1


def test_correlation_is_applied_to_the_normal_deviates(tmp_path, one_cpt):
    pop = population(tmp_path, """
        [meta]
        seed = 3
        [variability]
        CL = { distribution = "lognormal", cv = "30 %" }
        V = { distribution = "lognormal", cv = "30 %" }
        [[correlations]]
        between = ["CL", "V"]
        value = 0.6
        """)
    q = pop.sample(one_cpt, N).quantities()
    r = np.corrcoef(np.log(q["CL"].magnitude), np.log(q["V"].magnitude))[0, 1]
    # standard error of a correlation ~ (1 - r^2) / sqrt(n)
    assert r == pytest.approx(0.6, abs=4 * (1 - 0.36) / math.sqrt(N))


def test_covariates_and_effects(tmp_path, one_cpt):
    body = """
        [meta]
        seed = 4
        [variability]
        CL = { distribution = "lognormal", cv = "30 %" }
        [covariates.WT]
        distribution = "lognormal"
        median = "70 kg"
        cv = "20 %"
        [covariates.type]
        categories = { a = 0.3, b = 0.7 }
        """
    effects = """
        [[effects]]
        covariate = "WT"
        parameter = "CL"
        power = 0.75
        reference = "70 kg"
        [[effects]]
        covariate = "type"
        level = "a"
        parameter = "CL"
        multiply = 0.5
        [[effects]]
        covariate = "type"
        level = "a"
        parameter = "F"
        set = "0.6"
        """
    plain = population(tmp_path, body, "plain.toml").sample(one_cpt, 4000)
    with_effects = population(tmp_path, body + effects, "eff.toml").sample(one_cpt, 4000)
    kind = with_effects.covariate("type")
    assert np.array_equal(kind, plain.covariate("type"))  # same seed, same draws
    assert np.mean(kind == "a") == pytest.approx(0.3, abs=4 * math.sqrt(0.21 / 4000))
    wt = with_effects.covariate("WT").to("kg").magnitude
    ratio = (with_effects.quantities()["CL"] / plain.quantities()["CL"]).to("").magnitude
    expected = (wt / 70) ** 0.75 * np.where(kind == "a", 0.5, 1.0)
    np.testing.assert_allclose(ratio, expected, rtol=1e-12)
    f = with_effects.quantities()["F"].to("").magnitude
    assert np.all(f[kind == "a"] == 0.6) and np.all(f[kind == "b"] == 1.0)


def test_a_covariate_named_like_a_parameter_sets_it(tmp_path):
    cd38 = mechsim.load_model("cd38_myeloma")
    pop = population(tmp_path, """
        [meta]
        seed = 5
        [covariates.WT]
        distribution = "uniform"
        lower = "50 kg"
        upper = "90 kg"
        """)
    people = pop.sample(cd38, 100)
    np.testing.assert_array_equal(people.quantities()["WT"].to("kg").magnitude,
                                  people.covariate("WT").to("kg").magnitude)


def test_seed_reproduces_and_differs(tmp_path, one_cpt):
    pop = population(tmp_path, """
        [meta]
        seed = 6
        [variability]
        CL = { distribution = "lognormal", cv = "30 %" }
        """)
    a = pop.sample(one_cpt, 50).quantities()["CL"].magnitude
    b = pop.sample(one_cpt, 50).quantities()["CL"].magnitude
    c = pop.sample(one_cpt, 50, seed=7).quantities()["CL"].magnitude
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@settings(max_examples=25, deadline=None)
@given(cv=st.floats(0.01, 2.0), median=st.floats(1e-3, 1e3), lower=st.floats(0.2, 0.9))
def test_bounded_lognormal_stays_in_bounds(cv, median, lower):
    """Whatever the spread, every patient lies inside the bounds and the values are
    positive; the sample median of a log-normal bounded symmetrically in log space is the
    median."""
    from mechsim.population import Distribution, Population

    one_cpt = mechsim.load_model("one_compartment")
    omega = math.sqrt(math.log1p(cv * cv))
    lo, hi = median * lower, median / lower
    pop = Population(name="p", model=None, seed=1, variability=(Distribution(
        "V", "lognormal", mechsim.Quantity(median, "L"), omega,
        mechsim.Quantity(lo, "L"), mechsim.Quantity(hi, "L")),))
    v = pop.sample(one_cpt, 2000).quantities()["V"].to("L").magnitude
    assert np.all(v >= lo) and np.all(v <= hi)
    # symmetric truncation in log space keeps the median; allow 4 standard errors
    se = 1.2533 * min(omega, math.log(1 / lower)) / math.sqrt(2000)
    assert abs(np.log(np.median(v) / median)) < 4 * se + 1e-12


def test_shipped_icaria_population():
    cd38 = mechsim.load_model("cd38_myeloma")
    pop = load_population("icaria_population")
    pop.check(cd38)
    people = pop.sample(cd38, 3000)
    q = people.quantities()
    kind = people.covariate("myeloma_type")
    assert np.mean(kind == "IgG") == pytest.approx(0.68, abs=0.04)
    assert np.all(q["r0"][kind == "non_IgG"].magnitude == 1.0)
    assert np.all(q["r0"][kind == "IgG"].magnitude == pytest.approx(1.94))
    m0 = q["M0"].to("g/L").magnitude
    assert m0.min() >= 5 and m0.max() <= 70
    # every entry of a shipped population carries a source or a note
    import tomllib
    with open(pop.path, "rb") as fh:
        data = tomllib.load(fh)
    entries = list(data["variability"].values()) + list(data["covariates"].values()) + \
        data.get("effects", []) + data.get("correlations", [])
    assert all("source" in e or "note" in e for e in entries)


BAD = [
    ("[variability]\nCL = { distribution = \"lognormal\", cv = \"30 %\", typo = 1 }",
     ParseError, "unknown key 'typo'"),
    ("[variability]\nCL = { distribution = \"gamma\", cv = 0.3 }", ParseError,
     "distribution must be one of"),
    ("[variability]\nCL = { distribution = \"lognormal\" }", ParseError, "exactly one of cv"),
    ("[variability]\nCL = { distribution = \"lognormal\", cv = -0.3 }", ParseError,
     "must not be negative"),
    ("[variability]\nCL = { distribution = \"lognormal\", cv = \"3 L\" }", ParseError,
     "number or a percentage"),
    ("[variability]\nCL = { distribution = \"uniform\", lower = \"1 L/day\" }", ParseError,
     "needs lower and upper"),
    ("[variability]\nCL = { distribution = \"normal\", mean = \"1 L/day\", sd = \"1 L\" }",
     ParseError, "different dimensions"),
    ("[variability]\nCL = { distribution = \"lognormal\", median = \"1 L/day\", cv = 0.3, "
     "lower = \"2 L/day\" }", ParseError, "outside the bounds"),
    ("[covariates.t]\ncategories = { a = 0.5, b = 0.4 }", ParseError, "add up to 1"),
    ("[covariates.t]\ncategories = { a = 0.5, b = 0.5 }\n[[effects]]\ncovariate = \"t\"\n"
     "level = \"c\"\nparameter = \"CL\"\nmultiply = 2", ValidationError, "no level 'c'"),
    ("[variability]\nCLL = { distribution = \"lognormal\", cv = 0.3 }", ValidationError,
     "did you mean 'CL'"),
    ("[variability]\nCL = { distribution = \"lognormal\", median = \"3 L\", cv = 0.3 }",
     ValidationError, "dimension"),
    ("[variability]\nCL = { distribution = \"lognormal\", cv = 0.3 }\n"
     "V = { distribution = \"lognormal\", cv = 0.3 }\n[[correlations]]\n"
     "between = [\"CL\", \"V\"]\nvalue = 1.5", ParseError, "strictly between -1 and 1"),
    ("[variability]\nCL = { distribution = \"lognormal\", cv = 0.3 }\n"
     "V = { distribution = \"lognormal\", cv = 0.3 }\n"
     "ka = { distribution = \"lognormal\", cv = 0.3 }\n"
     "[[correlations]]\nbetween = [\"CL\", \"V\"]\nvalue = 0.9\n"
     "[[correlations]]\nbetween = [\"V\", \"ka\"]\nvalue = 0.9\n"
     "[[correlations]]\nbetween = [\"CL\", \"ka\"]\nvalue = -0.9", ValidationError,
     "not positive definite"),
    ("[variability]\nCL = { distribution = \"normal\", mean = \"1 L/day\", sd = \"1 L/day\","
     " lower = \"1 L/day\", upper = \"1.000000001 L/day\" }", ValidationError, "bounds reject"),
    ("[meta]\nseed = -1\n[variability]\nCL = { distribution = \"lognormal\", cv = 0.3 }",
     ParseError, "seed must be a non-negative integer"),
    ("[variabilty]\nCL = 1", ParseError, "unknown table [variabilty]"),
    ("[covariates.WT]\ndistribution = \"lognormal\"\nmedian = \"70 kg\"\ncv = 0.2\n[[effects]]\ncovariate = \"WT\""
     "\nparameter = \"CL\"\npower = 0.75\nreference = \"70 L\"", ValidationError,
     "does not have the dimension"),
]


@pytest.mark.parametrize(("body", "error", "fragment"), BAD)
def test_bad_population_files(tmp_path, one_cpt, body, error, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(("" if body.startswith("[meta]") else "[meta]\nseed = 1\n") + body + "\n")
    with pytest.raises(error, match=None) as info:
        read_population(path).sample(one_cpt, 100)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)  # says which file


def test_population_needs_a_seed(tmp_path, one_cpt):
    pop = population(tmp_path, """
        [variability]
        CL = { distribution = "lognormal", cv = "30 %" }
        """)
    with pytest.raises(ValidationError, match="no seed"):
        pop.sample(one_cpt, 10)
    assert len(pop.sample(one_cpt, 10, seed=3).quantities()["CL"]) == 10


# ---- body surface area from height and weight ------------------------------------------------
BSA_POPULATION = """
    [meta]
    seed = 11

    [covariates.HT]
    distribution = "normal"
    mean = "170 cm"
    sd = "10 cm"
    lower = "140 cm"
    upper = "200 cm"

    [covariates.WT]
    distribution = "lognormal"
    median = "75 kg"
    cv = "20 %"

    [covariates.BSA]
    formula = "FORMULA"
    source = "test"
    """


@pytest.fixture(scope="module")
def bsa_model(tmp_path_factory):
    from pathlib import Path
    text = (Path(__file__).resolve().parent.parent / "models" / "one_compartment.toml") \
        .read_text().replace("[compartments]", 'BSA = { value = "1.8 m2", note = "test" }\n'
                             'WT = { value = "70 kg", note = "test" }\n\n[compartments]')
    path = tmp_path_factory.mktemp("bsa") / "bsa.toml"
    path.write_text(text)
    return mechsim.load_model(path)


@pytest.mark.parametrize(("formula", "by_hand"), [
    ("mosteller", lambda h, w: np.sqrt(h * w / 3600)),                  # Mosteller 1987
    ("dubois", lambda h, w: 0.007184 * w ** 0.425 * h ** 0.725),        # DuBois 1916
])
def test_body_surface_area_follows_its_named_formula(tmp_path, bsa_model, formula, by_hand):
    pop = population(tmp_path, BSA_POPULATION.replace("FORMULA", formula))
    patients = pop.sample(bsa_model, 500)
    height = mechsim.Quantity(patients.covariates["HT"], "dm").to("cm").magnitude
    weight = mechsim.Quantity(patients.covariates["WT"], "g").to("kg").magnitude
    bsa = mechsim.Quantity(patients.parameters["BSA"], "dm**2").to("m**2").magnitude
    np.testing.assert_allclose(bsa, by_hand(height, weight), rtol=1e-12)
    assert 1.3 < np.median(bsa) < 2.3  # adults
    # 2 m2 for 180 cm and 80 kg: the textbook example of both formulas, to 2 %
    assert by_hand(180.0, 80.0) == pytest.approx(2.0, rel=0.02)


def test_a_given_height_and_weight_give_that_patients_bsa(tmp_path, bsa_model):
    pop = population(tmp_path, BSA_POPULATION.replace("FORMULA", "mosteller"))
    patients = pop.sample(bsa_model, 3, given={"HT": mechsim.Quantity(180, "cm"),
                                              "WT": mechsim.Quantity([60, 80, 100], "kg")})
    bsa = mechsim.Quantity(patients.parameters["BSA"], "dm**2").to("m**2").magnitude
    np.testing.assert_allclose(bsa, np.sqrt(180 * np.array([60, 80, 100]) / 3600))


def test_bad_body_surface_area_covariates_are_one_line(tmp_path, bsa_model):
    with pytest.raises(ParseError, match=r"pop.toml:\d+: covariate BSA: formula 'haycock' is "
                                         "not one of dubois, mosteller"):
        population(tmp_path, BSA_POPULATION.replace("FORMULA", "haycock"))
    with pytest.raises(ParseError, match="formula \\['mosteller'\\] is not one of"):
        population(tmp_path, BSA_POPULATION.replace('"FORMULA"', '["mosteller"]'))
    no_height = BSA_POPULATION.replace("FORMULA", "mosteller").replace("[covariates.HT]",
                                                                       "[covariates.HX]")
    with pytest.raises(ValidationError, match="the mosteller formula needs a numeric "
                                              "covariate HT \\(a length\\)"):
        population(tmp_path, no_height).sample(bsa_model, 2)


def test_a_power_effect_can_use_body_surface_area(tmp_path, bsa_model):
    body = BSA_POPULATION.replace("FORMULA", "mosteller") + textwrap.dedent("""
        [[effects]]
        covariate = "BSA"
        parameter = "CL"
        power = 0.75
        reference = "1.8 m2"
        """)
    patients = population(tmp_path, body).sample(bsa_model, 50)
    bsa = mechsim.Quantity(patients.parameters["BSA"], "dm**2").to("m**2").magnitude
    cl = mechsim.Quantity(patients.parameters["CL"], "L/day").magnitude
    typical = bsa_model.parameters_by_name["CL"].value.to("L/day").magnitude
    np.testing.assert_allclose(cl, typical * (bsa / 1.8) ** 0.75, rtol=1e-12)
