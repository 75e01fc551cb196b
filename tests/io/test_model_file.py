"""Model and parameter files: the format, layering, and one-line errors with file:line."""

import math
import re

import pytest
from toy_models import TMDD

import mechsim
from mechsim import ParseError, UnitError, ValidationError, load_model, load_params
from mechsim.io import prepare_model


def test_tmdd_toy_loads_and_conservation_laws_are_found(write_model):
    model = load_model(write_model(TMDD))
    cm = mechsim.compile_model(model)
    assert sorted(map(str, cm.conservation_laws)) == ["C + RC", "R + RC"]


def test_tmdd_toy_conserves_and_reaches_binding_equilibrium(write_model):
    model = load_model(write_model(TMDD))
    res = mechsim.simulate(model, None, until="2 day", rtol=1e-10, atol=1e-14)
    c, r, rc = (res[n].to("nM").magnitude for n in ("C", "R", "RC"))
    assert max(abs(c + rc - 5)) < 1e-8 and max(abs(r + rc - 10)) < 1e-8
    kd = 1e-3 / 1e5 * 1e9  # nM
    # closed-form equilibrium of C + R <-> RC with totals 5 and 10 nM
    b = 5 + 10 + kd
    rc_eq = (b - (b * b - 4 * 5 * 10) ** 0.5) / 2
    assert rc[-1] == pytest.approx(rc_eq, rel=1e-6)
    assert res["RO"].magnitude[-1] == pytest.approx(rc_eq / 10, rel=1e-6)
    assert res.diagnostics.max_conservation_residual < 1e-9


@pytest.mark.parametrize("edit, error, message", [
    (("rate = \"kon*C*R - koff*RC\"", "rate = \"kon*C*R - koff\""), UnitError,
     r"model.toml:32: .*cannot subtract"),
    (("rate = \"kon*C*R - koff*RC\"", "rate = \"koff*RC\""), None, None),
    (("rate = \"kon*C*R - koff*RC\"", "rate = \"kon*C*R/V\""), UnitError,
     r"model.toml:32: reaction binding: rate 'kon\*C\*R/V' has dimension"),
    (("rate = \"kon*C*R - koff*RC\"", "rate = \"kon*C*R - koff*RC*Kd\""), ValidationError,
     r"model.toml:32: reaction binding rate: unknown name 'Kd'"),
    (("rate = \"kon*C*R - koff*RC\"", "rate = \"__import__('os').system('touch pwned')\""),
     ParseError, r"model.toml:32: .*not allowed"),
    (("unit = \"nM\"\ninitial = \"5 nM\"", "unit = \"nM\"\ninitial = \"5 mg\""), UnitError,
     r"model.toml:15: species C initial value: expected \[substance\] / \[length\] \*\* 3, got \[mass\]"),
    (("[rules]", "[rule]"), ParseError, r"unknown table \[rule\]"),
    (("equation = \"C + R <-> RC\"", "equation = \"C + R <-> RC\"\nspeed = 3"), ParseError,
     r"model.toml:32: reactions.binding: unknown key 'speed'"),
    (("V = \"3 L\"", "V = \"3 furlongs per fortnight\""), UnitError,
     r"model.toml:13: compartment central volume: expected \[length\] \*\* 3, got \[length\] / \[time\]"),
    (("equation = \"C + R <-> RC\"", "equation = \"C + X -> RC\""), ValidationError,
     r"unknown species 'X'"),
    (("R0 = \"10 nM\"", "R0 = \"10 nM\"\nR0x = 1\nRC = \"1 nM\""), ValidationError,
     r"same name"),
    (("central = \"V\"", "central = \"R0\""), UnitError,
     r"compartment central volume: expected \[length\] \*\* 3"),
    (("[species.C]", "[species.C\n"), ParseError, r"not valid TOML"),
])
def test_bad_model_files_give_one_line_errors_with_location(write_model, edit, error, message):
    text = TMDD.replace(*edit)
    assert text != TMDD
    path = write_model(text)
    if error is None:  # the control: a valid edit loads
        load_model(path)
        return
    with pytest.raises(error) as info:
        load_model(path)
    text = str(info.value)
    assert "\n" not in text
    assert str(path.parent) in text or "model.toml" in text
    assert re.search(message, text), text


def test_dimension_error_names_reaction_and_both_dimensions(write_model):
    path = write_model(TMDD.replace('rate = "kon*C*R - koff*RC"', 'rate = "kon*C*R/V"'))
    with pytest.raises(UnitError) as info:
        load_model(path)
    msg = str(info.value)
    assert "reaction binding" in msg
    assert "has dimension [substance] / [length] ** 6 / [time]" in msg
    assert ("expected [substance] / [time] or [substance] / [time] / [length] ** 3 "
            "(per volume of central)") in msg


def test_injection_in_rate_law_runs_nothing(write_model, tmp_path):
    target = tmp_path / "pwned"
    path = write_model(TMDD.replace('rate = "kon*C*R - koff*RC"',
                                    f'rate = "__import__(\'os\').system(\'touch {target}\')"'))
    with pytest.raises(ParseError, match="is not allowed"):
        load_model(path)
    assert not target.exists()


def test_unknown_builtin_lists_the_known_ones():
    with pytest.raises(ValidationError, match="unknown built-in model 'nope'.*one_compartment"):
        load_model("nope")


def test_missing_file():
    with pytest.raises(ParseError, match="no such file: missing.toml"):
        load_model("missing.toml")


# ---- parameter files and layering -------------------------------------------------------
def test_parameter_layering_model_then_files_then_overrides(write_model, tmp_path):
    first = tmp_path / "a.toml"
    first.write_text('[parameters]\nV = { value = "5 L", source = "file a" }\nCL = "1 L/day"\n')
    second = tmp_path / "b.toml"
    second.write_text('[parameters]\nV = "7 L"\n')
    model = prepare_model(
        "one_compartment", [first, second], {"CL": "2 L/day"})
    values = model.parameters_by_name
    assert values["V"].value == mechsim.Quantity(7, "L")          # later file wins
    assert values["CL"].value == mechsim.Quantity(2, "L/day")     # override wins
    assert values["ka"].value == mechsim.Quantity(1, "1/day")     # model default kept
    assert load_params(first).values["V"].source == "file a"


@pytest.mark.parametrize("text, error, message", [
    ('[parameters]\nVX = "5 L"\n', ValidationError, r"p.toml:2: unknown parameter 'VX'"),
    ('[parameters]\nV = "5 mg"\n', UnitError, r"p.toml:2: parameter V must have the "
                                              r"dimension of 10 L \(\[length\] \*\* 3\), got 5 mg \(\[mass\]\)"),
    ('[parameters]\nV = { valu = "5 L" }\n', ParseError, r"p.toml:2: parameter V: unknown key"),
    ('[params]\nV = "5 L"\n', ParseError, r"unknown table \[params\]"),
    ('[parameters]\nV = "5 L"\nV = "6 L"\n', ParseError, r"not valid TOML"),
])
def test_bad_parameter_files(tmp_path, text, error, message):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(error, match=message):
        mechsim.simulate("one_compartment", None, until="1 day", params=path)


def test_override_with_wrong_dimension():
    with pytest.raises(UnitError, match="parameter CL must have the dimension"):
        mechsim.simulate("one_compartment", None, until="1 day", overrides={"CL": "10 mL"})


def test_every_builtin_model_and_params_pair_loads_and_runs():
    import tomllib

    from mechsim.io import builtin_names
    from mechsim.io.common import builtin_dir
    from mechsim.io.population_file import is_population, load_population
    for name in builtin_names("params"):
        if is_population(name):  # a population for virtual trials: sourced entry by entry
            data = tomllib.loads((builtin_dir("params") / f"{name}.toml").read_text())
            entries = [*data.get("variability", {}).items(),
                       *data.get("covariates", {}).items(),
                       *((e["parameter"], e) for e in data.get("effects", []))]
            for entry_name, entry in entries:
                assert entry.get("source") or entry.get("note"), f"{name}: {entry_name}"
            assert load_population(name).model in builtin_names("models")
            continue
        ps = load_params(name)
        assert ps.model in builtin_names("models"), name
        for p in ps.parameters:
            assert p.source or p.note, f"{name}: {p.name} has neither source nor note"
        res = mechsim.simulate(ps.model, None, until="1 day", params=name)
        assert res.diagnostics.segments >= 1
    for name in builtin_names("models"):
        for p in load_model(name).parameters:
            assert p.source or p.note, f"model {name}: {p.name} has neither source nor note"


def test_unit_only_parameters_take_values_from_default_parameter_sets(tmp_path):
    (tmp_path / "values.toml").write_text(
        '[parameters]\nk = { value = "0.5 1/day", source = "test" }\n')
    model_text = """
[model]
params = ["values.toml"]
[parameters]
k = { unit = "1/h" }
[species.x]
unit = "nmol"
initial = "1 nmol"
[reactions.loss]
equation = "x ->"
rate = "k*x"
"""
    (tmp_path / "m.toml").write_text(model_text)
    model = load_model(tmp_path / "m.toml")
    assert model.parameters_by_name["k"].value == mechsim.Quantity(0.5, "1/day")
    assert model.parameters_by_name["k"].source == "test"
    assert model.parameter_sets == ("values.toml",)
    res = mechsim.simulate(model, None, until="2 day", every="2 day", rtol=1e-10)
    assert res["x"].magnitude[-1] == pytest.approx(math.exp(-1), rel=1e-7)
    # without the parameter set, the declared-only parameter is an error at simulation time
    (tmp_path / "bare.toml").write_text(model_text.replace('params = ["values.toml"]', ""))
    with pytest.raises(ValidationError, match=r"no value for parameter\(s\) k"):
        mechsim.simulate(tmp_path / "bare.toml", None, until="1 day")
    (tmp_path / "missing.toml").write_text(model_text.replace("values.toml", "nope.toml"))
    with pytest.raises(ParseError, match=r"missing.toml:3: .*no such file"):
        load_model(tmp_path / "missing.toml")


# ---- problems found by writing the format documentation from the code --------------------
SINGLE = """
[parameters]
{params}
[species.A]
unit = "nmol"
initial = "1 nmol"
"""


def test_species_in_no_reaction_is_its_own_conservation_law(write_model):
    res = mechsim.simulate(write_model(SINGLE.format(params="")), None, until="1 day")
    assert list(res.diagnostics.conservation_residuals) == ["A"]


def one_cpt_with(tmp_path, **values):
    text = REPO_MODEL.read_text()
    for name, value in values.items():
        text = re.sub(rf"^{name} = .*$", f'{name} = "{value}"', text, flags=re.M)
    path = tmp_path / "one.toml"
    path.write_text(text)
    return path


REPO_MODEL = __import__("pathlib").Path(__file__).resolve().parents[2] / \
    "models" / "one_compartment.toml"


@pytest.mark.parametrize("values, regimen, error, message", [
    ({"tlag": "-1 h"}, "100 mg oral", ValidationError, r"parameter tlag is negative \(-1 h"),
    ({"F": "1.5"}, "100 mg oral", ValidationError, "bioavailability is 1.5"),
    ({"V": "-3 L"}, "100 mg iv", ValidationError, r"parameter V is negative \(-3 l"),
])
def test_impossible_values_set_through_parameters(tmp_path, values, regimen, error, message):
    with pytest.raises(error, match=message):
        mechsim.simulate(one_cpt_with(tmp_path, **values), regimen, until="1 day")


def test_body_weight_must_be_a_mass(write_model):
    path = write_model(REPO_MODEL.read_text().replace(
        "[parameters]\n", '[parameters]\nWT = { value = "70", note = "no unit" }\n'))
    with pytest.raises(UnitError, match="WT is the body weight and must be a mass"):
        mechsim.simulate(path, "10 mg/kg iv", until="1 day")


@pytest.mark.parametrize("edit, error, message", [
    (('name = "one_compartment"', 'name = "one_compartment"\ntime_unit = "mg"'), UnitError,
     r"one.toml:\d+: model.time_unit must be a time unit"),
    (('name = "one_compartment"', 'name = "one_compartment"\nauthor = "me"'), ParseError,
     r"one.toml:\d+: \[model\]: unknown key 'author'"),
    (('V = { value = "10 L"', 'V = { value = "nan L"'), ParseError,
     r"parameter V: value must be a number"),
    (("[routes.iv]", "[routes.IV]"), ValidationError, r"route name 'IV' must be a lower-case"),
    (('central = "V"', 'central = "V*C/C"'), ValidationError,
     r"'C' changes during a run"),
])
def test_model_file_checks(tmp_path, edit, error, message):
    path = tmp_path / "one.toml"
    text = REPO_MODEL.read_text()
    assert edit[0] in text
    path.write_text(text.replace(*edit))
    with pytest.raises(error, match=message):
        load_model(path)


def test_spaced_product_is_an_expression_not_a_quantity(tmp_path):
    path = tmp_path / "one.toml"
    path.write_text(REPO_MODEL.read_text().replace('central = "V"', 'central = "2 * V"'))
    model = load_model(path)
    res = mechsim.simulate(model, "1000 nmol iv", until="1 day", every="1 day")
    assert res["C"].to("nM").magnitude[0] == pytest.approx(1000 / 20)


def test_file_name_becomes_model_name_and_params_must_match(tmp_path):
    path = tmp_path / "my-model.toml"
    path.write_text(REPO_MODEL.read_text().replace('name = "one_compartment"\n', ""))
    assert load_model(path).name == "my_model"
    other = tmp_path / "other.toml"
    other.write_text('[meta]\nmodel = "cd38_myeloma"\n[parameters]\nV = "3 L"\n')
    with pytest.raises(ValidationError, match="is for model 'cd38_myeloma', not 'my_model'"):
        mechsim.simulate(path, None, until="1 day", params=other)
