"""Outputs as a user asks for them: the model's default outputs and labels, units that
read as a person writes them, NAME[unit] wherever an output is named, the time unit,
tables (DataFrame, parameters) and the notebook summaries."""

import csv
import warnings

import numpy as np
import pytest

import mechsim
from mechsim import UnitError, UnitWarning, ValidationError
from mechsim.cli import main
from mechsim.units import readable_unit, split_output, ureg

MODEL = """
[model]
name = "labelled"
{head}

[parameters]
V = {{ value = "10 L", note = "test" }}
CL = {{ value = "5 L/day", note = "test" }}
t_half_x = {{ value = "2 h", note = "test" }}
MW = {{ value = "150 kg/mol", note = "test" }}

[compartments]
central = "V"

[species.C]
compartment = "central"
unit = "nM"
initial = "0 nM"
label = "{label}"

[rules]
C_mass = {{ expr = "C*MW", label = "drug in plasma" }}
k_x = "log(2)/t_half_x"
{extra}

[reactions.elimination]
equation = "C ->"
rate = "CL*C/V"

[routes.iv]
target = "C"
molecular_weight = "MW"
"""


def write(tmp_path, head="", label="free drug", extra=""):
    text = MODEL.format(head=head, label=label, extra=extra).replace(
        'target = "C"\nmolecular_weight = "MW"', 'target = "C"')
    text = text.replace("[routes.iv]", '[drugs.d]\nmolecular_weight = "MW"\n\n[routes.iv]')
    path = tmp_path / "labelled.toml"
    path.write_text(text)
    return path


# ---- units a person would write ------------------------------------------------------------
@pytest.mark.parametrize("written, hints, expected", [
    ("g*nM/mol", [], "mg/L"),            # a mass concentration from nM x molecular weight
    ("nM/M/s", ["nM", "1/M/s"], "1/s"),   # koff = KD * kon: the time unit kon is in
    ("nM/M/h", ["nM", "1/M/h"], "1/h"),
    ("nmol/L", [], "nM"),                 # a concentration is written in nM
    ("L/h", ["L/h", "1"], "L/h"),          # simple and written so in the model: kept
    ("M", ["1/s", "1/M/s"], "nM"),        # koff/kon: M is simple but not what people write
    ("L*nM/day**2", ["L", "nM", "1/d"], "nmol/d**2"),  # no usual name: nmol, mg, L, time
    ("nM", [], "nM"),
    ("g*nM/mol*h", ["h"], "mg*h/L"),      # an AUC
    ("nM/M", [], "dimensionless"),
])
def test_inferred_units_read_as_a_person_writes_them(written, hints, expected):
    unit, simple = readable_unit(ureg.Unit(written), [ureg.Unit(h) for h in hints])
    assert simple and unit == ureg.Unit(expected)
    assert ureg.Quantity(1, written).to(unit).magnitude > 0  # same dimension


def test_a_unit_that_cannot_be_simplified_is_kept_and_warned_about(tmp_path):
    path = write(tmp_path, extra='odd = "C*MW*C"')  # mass x substance / volume**2
    with pytest.warns(UnitWarning, match=r"labelled\.toml:\d+: rule odd: .*declare the unit"):
        model = mechsim.load_model(path)
        assert (1 * model.rule_units["odd"]).dimensionality == \
            ureg.Quantity(1, "g*mol/L**2").dimensionality
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mechsim.load_model(write(tmp_path, extra='C_auc = "C*MW*t"'))  # mg*day/L: simple


def test_the_flagship_rate_constants_are_in_plain_units():
    m = mechsim.load_model("cd40_apc")
    assert m.rule_units["koff_D"] == ureg.Unit("1/s")
    assert mechsim.load_model("cd38_myeloma").rule_units["koff"] == ureg.Unit("1/s")


# ---- default outputs and labels ------------------------------------------------------------
def test_default_outputs_leave_out_rules_of_parameters_only(tmp_path):
    model = mechsim.load_model(write(tmp_path))
    assert model.default_outputs == ("C", "C_mass")  # k_x depends on parameters only
    res = mechsim.simulate(model, "100 mg iv", until="1 day", every="12 h")
    assert res.outputs == ("C", "C_mass")
    assert res.label("C_mass[ug/mL]") == "drug in plasma [ug/mL]"
    assert res.label("k_x") == "k_x [1/h]"


def test_declared_outputs_are_the_default_and_must_exist(tmp_path):
    model = mechsim.load_model(write(tmp_path, head='outputs = ["C_mass"]'))
    assert model.default_outputs == ("C_mass",)
    with pytest.raises(ValidationError, match="model.outputs: 'nope' is not a species or rule"):
        mechsim.load_model(write(tmp_path, head='outputs = ["nope"]'))
    with pytest.raises(mechsim.ParseError, match=r"labelled\.toml:\d+: model.outputs must "):
        mechsim.load_model(write(tmp_path, head='outputs = "C"'))
    with pytest.raises(mechsim.ParseError, match=r"label must be one line of text"):
        mechsim.load_model(write(tmp_path, label=""))


def test_flagship_models_show_their_declared_outputs_with_labels():
    for name in ("cd38_myeloma", "cd40_apc"):
        model = mechsim.load_model(name)
        assert 0 < len(model.default_outputs) <= 12
        assert all(n in model.labels for n in model.default_outputs
                   if n not in ("GC", "PC", "Ab", "APC", "N", "NK", "M"))
        assert all(model.labels.get(s.name) for s in model.species)


# ---- NAME[unit] ----------------------------------------------------------------------------
def test_an_output_in_the_unit_asked_for():
    res = mechsim.simulate("one_compartment", "100 mg iv", until="1 day", every="6 h")
    mg_per_l = res["C_mass"].to("mg/L").magnitude
    np.testing.assert_allclose(res["C_mass[ng/mL]"].magnitude, 1000 * mg_per_l, rtol=1e-12)
    assert res.unit("C_mass[ug/mL]") == ureg.Unit("ug/mL")
    _, troughs = res.before_dose("C_mass[ng/mL]")
    assert troughs.units == ureg.Unit("ng/mL")
    with pytest.raises(UnitError, match="output C_mass is in mg/L .* cannot be shown in nmol"):
        res["C_mass[nmol]"]
    with pytest.raises(ValidationError, match="the brackets hold no unit"):
        res["C_mass[]"]
    with pytest.raises(ValidationError, match="did you mean 'C_mass'"):
        res["Cmass"]
    assert split_output(" RO [ % ] ") == ("RO", ureg.Unit("percent"))
    batch = mechsim.simulate_many("one_compartment", "100 mg iv", until="1 day",
                                  every="12 h", parameters={"V": ["10 L", "20 L"]})
    np.testing.assert_allclose(batch["C_mass[ug/mL]"].magnitude,
                               batch["C_mass"].to("mg/L").magnitude, rtol=1e-12)


def test_time_unit_and_dataframes():
    pytest.importorskip("pandas")
    res = mechsim.simulate("one_compartment", "100 mg iv", until="1 day", every="12 h")
    hours = res.in_time_unit("h")
    assert hours.time.magnitude.tolist() == [0.0, 12.0, 24.0]
    with pytest.raises(UnitError, match="must be a time"):
        res.in_time_unit("mg")
    frame = hours.to_dataframe(["C_mass[ng/mL]", "C"])
    assert list(frame.columns) == ["time [h]", "C_mass [ng/mL]", "C [nM]"]
    bare = hours.to_dataframe(["C_mass[ng/mL]"], bare_names=True)
    assert list(bare.columns) == ["time", "C_mass"]
    assert bare.attrs["units"] == {"time": "h", "C_mass": "ng/mL"}
    np.testing.assert_allclose(bare["C_mass"], 1000 * res["C_mass"].to("mg/L").magnitude)
    table = mechsim.load_model("one_compartment").parameters_table()
    row = table.set_index("name").loc["CL"]
    assert row["unit"] == "L/d" and row["value"] == pytest.approx(6.931471805599453)
    assert "illustrative" in row["note"]


# ---- the command line ----------------------------------------------------------------------
def test_simulate_shows_the_model_outputs_in_the_units_asked_for(tmp_path, capsys):
    assert main(["simulate", "cd40_apc", "--regimen", "3 mg/kg iv", "--until", "2 weeks",
                 "--every", "1 week"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split("\t")
    declared = mechsim.load_model("cd40_apc").default_outputs
    assert [h.split(" [")[0] for h in header] == ["time", *declared]
    out = tmp_path / "c.csv"
    assert main(["simulate", "one_compartment", "--regimen", "100 mg iv every 12 h x 2",
                 "--until", "1 day", "--every", "6 h", "--output", "C_mass[ng/mL],C",
                 "--time-unit", "h", "--out", str(out)]) == 0
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["time [h]", "C_mass [ng/mL]", "C [nM]"]
    assert [float(r[0]) for r in rows[1:]] == [0.0, 6.0, 12.0, 18.0, 24.0]
    assert float(rows[1][1]) == pytest.approx(10_000.0)  # 100 mg in 10 L, in ng/mL


@pytest.mark.parametrize("args, message", [
    (["--output", "C_mass[nmol]"], "output C_mass is in mg/L"),
    (["--output", "C_mass[ng/mL"], "cannot read the output"),
    (["--time-unit", "mg"], "the time unit must be a time"),
])
def test_simulate_refuses_bad_output_units_in_one_line(tmp_path, capsys, args, message):
    out = tmp_path / "x.csv"
    assert main(["simulate", "one_compartment", "--regimen", "100 mg iv", "--until", "1 day",
                 *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_overlay_draws_every_output_on_one_axes(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from mechsim.plotting import plot_timecourse

    res = mechsim.simulate("cd40_apc", "3 mg/kg iv", until="8 weeks", every="1 day")
    names = ["IL6_rel", "TNF_rel", "IFNg_rel"]
    axes = plot_timecourse(res, names, overlay=True)
    visible = [ax for ax in axes.ravel() if ax.get_visible()]
    assert len(visible) == 1 and len(visible[0].get_lines()) == 3
    assert [t.get_text() for t in visible[0].get_legend().get_texts()] == \
        [res.label(n) for n in names]
    assert visible[0].get_ylabel() == "[%]"
    panels = plot_timecourse(res, names)
    assert [ax.get_ylabel() for ax in panels.ravel()[:3]] == \
        ["IL-6 relative to baseline [%]", "TNF-alpha relative to baseline [%]",
         "IFN-gamma relative to baseline [%]"]


# ---- notebook summaries --------------------------------------------------------------------
def test_notebook_summaries_escape_what_the_model_file_says(tmp_path):
    model = mechsim.load_model(write(tmp_path, label="<script>alert(1)</script>"))
    html = model._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html
    res = mechsim.simulate(model, "100 mg iv every 12 h x 2", until="1 day", every="6 h")
    page = res._repr_html_()
    assert "&lt;script&gt;" in page and "100 mg iv every 12 h x 2" in page
    assert "<td" in page and "C_mass" in page
    regimen = mechsim.Regimen.parse("100 mg iv every 12 h x 3")._repr_html_()
    assert "3 doses in the first 84 days" in regimen
    batch = mechsim.simulate_many(model, ["3 mg iv", "10 mg iv"], until="1 day",
                                  parameters={"V": ["10 L", "20 L"]})
    page = batch._repr_html_()
    assert "2 runs x" in page
    # regimens in the order of the runs, and which parameters differ between runs
    assert page.index("3 mg iv") < page.index("10 mg iv")
    assert "differ between runs: <code>V</code>" in page


def test_the_command_line_prints_a_loader_warning_once_on_one_line(tmp_path, capsys):
    path = write(tmp_path, extra='odd = "C*MW*C"')
    assert main(["simulate", str(path), "--regimen", "100 mg iv", "--until", "1 day",
                 "--every", "12 h"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("mechsim: warning: ")
    assert "rule odd" in err[0] and "labelled.toml:" in err[0]
