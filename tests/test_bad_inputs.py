"""The bad-input catalogue: every way of getting it wrong that users have found, once each.

Each case is a model, parameter, population or scenario file with one defect, a command
line, or an API call, with the exception it must raise and a fragment of its message.
Every file case is checked twice: through the API (the documented exception) and through
the CLI (one line on stderr, exit status 2, no output written).  docs/robustness.md
explains the policy.
"""

import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import mechsim
import mechsim.io.sbml
from mechsim import ParseError, RegimenError, SolverError, UnitError, ValidationError
from mechsim.cli import main

# A small valid model; each file case changes one thing in it.
MODEL = textwrap.dedent("""
    [model]
    name = "pk"
    description = "one compartment with a rule"

    [drugs.drug]
    molecular_weight = "MW"

    [parameters]
    MW = { value = "150 kg/mol", source = "test" }
    V = { value = "3 L", source = "test" }
    CL = { value = "0.2 L/day", source = "test" }
    k = { value = "0.1 1/day", source = "test" }

    [compartments]
    central = "V"

    [species.C]
    compartment = "central"
    unit = "nM"
    initial = "0 nM"

    [species.E]
    unit = "nmol"
    initial = 0

    [reactions.elimination]
    equation = "C -> E"
    rate = "CL*C"

    [rules]
    C_mass = { expr = "C*MW", unit = "mg/L" }

    [routes.iv]
    target = "C"
    """)


def variant(old: str, new: str) -> str:
    assert old in MODEL, old
    return MODEL.replace(old, new, 1)


# (id, model text, exception, message fragment)
MODEL_CASES = [
    ("malformed TOML", MODEL.replace("[model]", "[model"), ParseError, "not valid TOML"),
    ("duplicate TOML key", variant('V = { value = "3 L", source = "test" }',
                                   'V = "3 L"\nV = "4 L"'), ParseError, "not valid TOML"),
    ("empty file", "", ParseError, "missing [species] table"),
    ("unknown table", MODEL + "\n[reactionz]\n", ParseError, "unknown table [reactionz]"),
    ("unknown species in an equation", variant('"C -> E"', '"C -> X"'), ValidationError,
     "'X'"),
    ("unknown parameter in a rate law", variant('"CL*C"', '"CLL*C"'), ValidationError,
     "'CLL'"),
    ("unknown function in a rate law", variant('"CL*C"', '"CL*foo(C)"'), ParseError,
     "function 'foo' is not allowed"),
    ("code in a rate law", variant('"CL*C"', '"__import__(\'os\').system(\'true\')"'),
     ParseError, "is not allowed"),
    ("attribute access in a rule", variant('"C*MW"', '"C.real"'), ParseError,
     "Attribute is not allowed"),
    ("huge exponent", variant('"CL*C"', '"CL*C*10**10**10"'), ParseError,
     "too large"),
    ("duplicate name (parameter and species)", variant('k = { value = "0.1 1/day", '
                                                      'source = "test" }', 'C = "1 nM"'),
     ValidationError, "'C'"),
    ("circular rules", MODEL.replace('C_mass = { expr = "C*MW", unit = "mg/L" }',
                                     'A = { expr = "B", unit = "1" }\n'
                                     'B = { expr = "A", unit = "1" }'),
     ValidationError, "circular"),
    ("rate with the wrong dimension", variant('"CL*C"', '"CL"'), UnitError,
     "reaction elimination"),
    ("adding unlike dimensions", variant('"CL*C"', '"CL*C + V"'), UnitError,
     "cannot add"),
    ("function of a dimensional argument", variant('"CL*C"', '"CL*C*exp(V)"'), UnitError,
     "dimensionless argument"),
    ("unit typo in a value", variant('"3 L"', '"3 Lx"'), UnitError, "Lx"),
    ("unit typo in a species unit", variant('unit = "nM"', 'unit = "nMM"'), UnitError,
     "nMM"),
    ("value with the wrong dimension", variant('"3 L"', '"3 mg"'), UnitError, "volume"),
    ("negative volume", variant('"3 L"', '"-3 L"'), ValidationError, "negative"),
    ("zero volume", variant('"3 L"', '"0 L"'), ValidationError, "volume"),
    ("negative clearance", variant('"0.2 L/day"', '"-0.2 L/day"'), ValidationError,
     "negative"),
    ("NaN value", variant('"3 L"', '"nan L"'), ParseError, "must be a number"),
    ("infinite value", variant('"3 L"', '"inf L"'), ValidationError, "must be finite"),
    ("species in an unknown compartment", variant('compartment = "central"',
                                                  'compartment = "tissue"'),
     ValidationError, "'tissue'"),
    ("route to an unknown species", variant('target = "C"', 'target = "Q"'),
     ValidationError, "'Q'"),
    ("rate law that is not text", variant('rate = "CL*C"', "rate = 5"), ParseError,
     "expression in quotes"),
]


@pytest.fixture
def model_file(tmp_path):
    def write(text, name="model.toml"):
        path = tmp_path / name
        path.write_text(text)
        return path
    return write


def one_line_exit_2(args, tmp_path, capsys) -> str:
    cwd = os.getcwd()
    os.chdir(tmp_path)
    before = set(Path(tmp_path).rglob("*"))
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert set(Path(tmp_path).rglob("*")) == before  # nothing written, nothing half-written
    return err


@pytest.mark.parametrize(("case", "text", "error", "fragment"), MODEL_CASES,
                         ids=[c[0] for c in MODEL_CASES])
def test_bad_model_file(case, text, error, fragment, model_file, tmp_path, capsys):
    path = model_file(text)
    with pytest.raises(error) as info:
        mechsim.simulate(mechsim.load_model(path), "1 mg iv", until="1 day")
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)
    err = one_line_exit_2(["simulate", str(path), "--regimen", "1 mg iv", "--until", "1 day",
                           "--out", "never.csv"], tmp_path, capsys)
    assert fragment in err


def test_bad_model_file_errors_name_the_line(model_file):
    path = model_file(variant('"CL*C"', '"CLL*C"'))
    line = next(i for i, s in enumerate(path.read_text().splitlines(), 1) if "CLL" in s)
    with pytest.raises(ValidationError, match=rf"model.toml:{line}: "):
        mechsim.load_model(path)


# ---- [[expect]] entries: each case changes one line of a valid entry ---------------------
EXPECT = textwrap.dedent("""

    [[expect]]
    name = "more clearance lowers C"
    vary = "CL"
    over = ["0.1 L/day", "1 L/day"]
    regimen = "1 mg iv"
    output = "C"
    at = "1 day"
    effect = "decreases"
    """)


def expect_variant(old: str, new: str, named: str | None = None) -> tuple[str, str]:
    """(model text with one line of the [[expect]] entry changed, the start of the line the
    error must name: ``named``, else the changed line's key)."""
    assert old in EXPECT, old
    return MODEL + EXPECT.replace(old, new, 1), named or new.splitlines()[-1].split("=")[0]


EXPECT_CASES = [
    ("unknown key", expect_variant('effect = "decreases"', 'effect = "decreases"\nwhen = 3'),
     "unknown key 'when'"),
    ("unknown effect", expect_variant('"decreases"', '"shrinks"', "effect"), "is not one of"),
    ("no effect", expect_variant('effect = "decreases"', '', "[[expect]]"),
     "'effect' is required"),
    ("unknown parameter varied", expect_variant('vary = "CL"', 'vary = "CLL"'),
     "unknown parameter 'CLL'"),
    ("range of the wrong dimension", expect_variant('["0.1 L/day", "1 L/day"]',
                                                   '["0.1 mg", "1 mg"]', "over"),
     "expected the dimension of CL"),
    ("range that does not rise", expect_variant('["0.1 L/day", "1 L/day"]',
                                               '["1 L/day", "0.1 L/day"]', "over"),
     "must rise"),
    ("range that is not a pair", expect_variant('["0.1 L/day", "1 L/day"]', '"1 L/day"',
                                                              "over"),
     "range [LOW, HIGH]"),
    ("dose without the placeholder", expect_variant('vary = "CL"\nover = ["0.1 L/day", '
                                                    '"1 L/day"]',
                                                    'vary = "dose"\nover = ["0 mg", "1 mg"]', "regimen"),
     "placeholder DOSE"),
    ("bad regimen grammar", expect_variant('"1 mg iv"', '"1 mg iv every week"', "regimen"),
     "regimen"),
    ("unknown output", expect_variant('output = "C"', 'output = "CC"'),
     "unknown name 'CC'"),
    ("output of unlike dimensions", expect_variant('output = "C"', 'output = "C + V"'),
     "cannot add"),
    ("code as an output", expect_variant('output = "C"',
                                         'output = "__import__(\'os\').getcwd()"'),
     "is not allowed"),
    ("a time that is not a time", expect_variant('at = "1 day"', 'at = "1 mg"'),
     "expected a time"),
    ("a time at 0", expect_variant('at = "1 day"', 'at = "0 day"'), "after 0"),
    ("no varied input for a comparison", expect_variant('vary = "CL"\nover = ["0.1 L/day", '
                                                        '"1 L/day"]', '', "[[expect]]"),
     "'vary' is required"),
    ("given of an unknown parameter", expect_variant('effect = "decreases"',
                                                     'effect = "decreases"\n'
                                                     'given = { VV = "1 L" }'),
     "unknown parameter 'VV'"),
    ("bounds for a comparison", expect_variant('effect = "decreases"',
                                               'effect = "decreases"\nbetween = ["0", "1"]'),
     "'between' goes with"),
    ("within without bounds", expect_variant('effect = "decreases"', 'effect = "within"',
                                             "[[expect]]"),
     "needs 'between'"),
    ("bounds of the wrong dimension", expect_variant('effect = "decreases"',
                                                     'effect = "within"\n'
                                                     'between = ["0 mg", "1 mg"]', "between"),
     "the dimension of the outputs"),
    ("a time that is not finite", expect_variant('at = "1 day"', 'at = "inf day"'),
     "must be finite"),
    ("a DOSE part that gives another dose too",
     expect_variant('vary = "CL"\nover = ["0.1 L/day", "1 L/day"]\nregimen = "1 mg iv"',
                    'vary = "dose"\nover = ["0 mg", "1 mg"]\n'
                    'regimen = "100 mg iv then DOSE iv at 1 day"', "regimen"),
     "gives other doses beside DOSE"),
    ("tolerance that is not relative", expect_variant('effect = "decreases"',
                                                      'effect = "decreases"\ntolerance = 2'),
     "tolerance"),
]


@pytest.mark.parametrize(("case", "text_named", "fragment"), EXPECT_CASES,
                         ids=[c[0] for c in EXPECT_CASES])
def test_bad_expectation(case, text_named, fragment, model_file, tmp_path, capsys):
    text, named = text_named
    path = model_file(text)
    with pytest.raises(mechsim.MechsimError) as info:
        mechsim.load_model(path)
    message = str(info.value)
    assert fragment in message and "\n" not in message, message
    line = int(message.split(":", 2)[1])  # ".../model.toml:LINE: ..."
    assert text.splitlines()[line - 1].strip().startswith(named.strip()), (line, named)
    err = one_line_exit_2(["simulate", str(path), "--regimen", "1 mg iv", "--until", "1 day",
                           "--out", "never.csv"], tmp_path, capsys)
    assert fragment in err
    # mechsim check reports a file that does not load as its failed first check (exit 1)
    assert main(["check", str(path)]) == 1
    assert f"FAIL load and unit check: {message}" in capsys.readouterr().out


def test_a_duplicate_expectation_name_names_both_lines(model_file):
    path = model_file(MODEL + EXPECT + EXPECT)
    first = MODEL.count("\n") + EXPECT.count("\n") - EXPECT.lstrip("\n").count("\n") + 1
    with pytest.raises(ParseError, match=rf"declared twice \(first at .*model.toml:{first}\)"):
        mechsim.load_model(path)


# ---- parameter, population and scenario files --------------------------------------------

PARAMS = [
    ("unknown parameter", '[parameters]\nVV = "3 L"\n', ValidationError, "'VV'"),
    ("wrong dimension", '[parameters]\nV = "3 mg"\n', UnitError, "V"),
    ("malformed", "[parameters\n", ParseError, "not valid TOML"),
    ("not a number", '[parameters]\nV = "lots"\n', UnitError, "lots"),
    ("a population file", '[variability]\nV = { distribution = "lognormal", cv = "20 %" }\n',
     ParseError, "population file"),
]


@pytest.mark.parametrize(("case", "text", "error", "fragment"), PARAMS,
                         ids=[c[0] for c in PARAMS])
def test_bad_parameter_file(case, text, error, fragment, model_file, tmp_path, capsys):
    model = model_file(MODEL)
    params = model_file(text, "params.toml")
    with pytest.raises(error, match=fragment):
        mechsim.simulate(model, "1 mg iv", until="1 day", params=[str(params)])
    err = one_line_exit_2(["simulate", str(model), "--params", str(params), "--until", "1 day",
                           "--out", "never.csv"], tmp_path, capsys)
    assert fragment in err


POPULATIONS = [
    ("unknown distribution", 'V = { distribution = "gamma", cv = "20 %" }',
     "distribution must be one of lognormal, normal, uniform, got 'gamma'"),
    ("negative cv", 'V = { distribution = "lognormal", cv = "-20 %" }', "cv"),
    ("lower above upper", 'V = { distribution = "lognormal", cv = "20 %", lower = "5 L", '
                          'upper = "1 L" }', "lower"),
    ("unknown parameter", 'VV = { distribution = "lognormal", cv = "20 %" }', "'VV'"),
    ("wrong dimension of a bound", 'V = { distribution = "lognormal", cv = "20 %", '
                                   'upper = "5 mg" }', "does not have the dimension"),
    ("normal without sd", 'V = { distribution = "normal" }', "sd"),
    ("normal that can go negative", 'V = { distribution = "normal", sd = "1 L" }',
     "can draw negative values"),
]


@pytest.mark.parametrize(("case", "line", "fragment"), POPULATIONS,
                         ids=[c[0] for c in POPULATIONS])
def test_bad_population_file(case, line, fragment, model_file):
    model = mechsim.load_model(model_file(MODEL))
    path = model_file(f'[meta]\nmodel = "pk"\nseed = 1\n\n[variability]\n{line}\n', "pop.toml")
    with pytest.raises(mechsim.MechsimError, match=fragment) as info:
        mechsim.load_population(path).sample(model, 10, seed=1)
    assert "pop.toml" in str(info.value)


def test_bad_correlations_and_categories(model_file):
    model = mechsim.load_model(model_file(MODEL))
    head = ('[meta]\nmodel = "pk"\nseed = 1\n\n[variability]\n'
            'V = { distribution = "lognormal", cv = "20 %" }\n'
            'CL = { distribution = "lognormal", cv = "20 %" }\n'
            'k = { distribution = "lognormal", cv = "20 %" }\n')
    cases = [
        ('[[correlations]]\nbetween = ["V", "CL"]\nvalue = 1.5\n', "between -1 and 1"),
        ('[[correlations]]\nbetween = ["V", "CL"]\nvalue = 0.9\n[[correlations]]\n'
         'between = ["V", "k"]\nvalue = 0.9\n[[correlations]]\nbetween = ["CL", "k"]\n'
         'value = -0.9\n', "positive definite"),
        ('[covariates.type]\ncategories = { a = 0.5, b = 0.2 }\n', "shares must add up to 1"),
    ]
    for body, fragment in cases:
        path = model_file(head + body, "pop.toml")
        with pytest.raises(mechsim.MechsimError, match=fragment):
            mechsim.load_population(path).sample(model, 10, seed=1)


SCENARIO = textwrap.dedent("""
    [scenario]
    name = "s"
    model = "{model}"
    until = "2 day"
    every = "1 day"
    outputs = ["C_mass"]
    {extra}

    [arms.a]
    regimen = "1 mg iv"
    """)


@pytest.mark.parametrize(("case", "model", "extra", "fragment"), [
    ("missing model file", "missing.toml", "", "no such file"),
    ("missing parameter file", "MODEL", 'params = ["missing_params.toml"]', "no such file"),
    ("unknown output", "MODEL", "", "C_masss"),
    ("missing population file", "MODEL", "", "no such file"),
], ids=lambda v: v if isinstance(v, str) and " " in v else "")
def test_bad_scenario(case, model, extra, fragment, model_file, tmp_path, capsys):
    path = model_file(MODEL)
    text = SCENARIO.format(model=str(path) if model == "MODEL" else model, extra=extra)
    if case == "unknown output":
        text = text.replace('["C_mass"]', '["C_masss"]')
    if case == "missing population file":
        text += '\n[trial]\npopulation = "nowhere.toml"\nsize = 5\nfollow_up = "1 month"\n'
    scenario = model_file(text, "s.toml")
    err = one_line_exit_2(["run", str(scenario), "--out", "out"], tmp_path, capsys)
    assert fragment in err


# ---- command lines -----------------------------------------------------------------------

SHIPPED_SCENARIO = str(Path(__file__).resolve().parent.parent / "examples" / "scenarios"
                       / "iscalimab_q4w.toml")

CLI = [
    (["simulate", "cd38_myelom", "--until", "1 day"], "did you mean 'cd38_myeloma'"),
    (["simulate", "one_compartment", "--regimen", "10 mL iv", "--until", "1 day"],
     "dose amount must be a mass"),
    (["simulate", "one_compartment", "--regimen", "10 mg/kg iv", "--until", "1 day"],
     "body weight"),
    (["simulate", "one_compartment", "--regimen", "56 mg/m2 iv", "--until", "1 day"],
     "no parameter BSA (body surface area)"),
    (["simulate", "one_compartment", "--regimen", "56 mg/m3 iv", "--until", "1 day"],
     "unknown unit 'mg/m3'"),
    (["simulate", "one_compartment", "--regimen", "nan mg iv", "--until", "1 day"],
     "expected a dose"),
    (["simulate", "one_compartment", "--regimen", "100 mg iv every", "--until", "1 day"],
     "regimen"),
    (["simulate", "one_compartment", "--regimen", "100 mg teleport", "--until", "1 day"],
     "teleport"),
    (["simulate", "one_compartment", "--regimen", "100 mg iv every 0 days x 3",
      "--until", "1 day"], "interval"),
    (["simulate", "one_compartment", "--regimen", "100 mg iv over -1 h", "--until", "1 day"],
     "regimen"),
    (["simulate", "one_compartment", "--regimen", "100 mg po q0h", "--until", "1 day"],
     "frequency 'q0h': the dosing interval must be > 0"),
    (["simulate", "one_compartment", "--regimen", "100 mg oral BID every 12 h", "--until",
      "1 day"], "two frequencies, 'BID' and 'every 12 h': give one"),
    (["simulate", "one_compartment", "--regimen", "100 mg oral q24 x 7", "--until", "1 day"],
     "frequency 'q24' needs a time unit: 'q24h' (hours), 'q24d' (days) or 'q24w' (weeks)"),
    (["simulate", "one_compartment", "--regimen", "100 mg oral every other month", "--until",
      "1 day"], "expected a frequency such as 'every other day' or 'every other week'"),
    (["simulate", "one_compartment", "--regimen", "100 mg iv on days 1-3 x 2", "--until",
      "1 day"], "give the cycle length, as in 'on days ... of 28-day cycles x 2'"),
    (["simulate", "one_compartment", "--regimen", "100 mg subcut QW", "--until", "1 day"],
     "no dosing route 'subcut' (nor its synonyms sc, subcutaneous; routes: iv, oral)"),
    (["simulate", "one_compartment", "--until", "0 day"], "`until` must be after 0"),
    (["simulate", "one_compartment", "--until", "-3 day"], "`until` must be after 0"),
    (["simulate", "one_compartment", "--until", "inf day"], "finite"),
    (["simulate", "one_compartment", "--until", "1 day", "--every", "0 day"], "every"),
    (["simulate", "one_compartment", "--until", "100 years", "--every", "1 s"],
     "output points"),
    (["simulate", "one_compartment", "--until", "1 day", "--set", "V=10 mg"],
     "must have the dimension of"),
    (["simulate", "one_compartment", "--until", "1 day", "--set", "V=-1 L"], "negative"),
    (["simulate", "one_compartment", "--until", "1 day", "--set", "CL=nan L/day"],
     "must be a number"),
    (["simulate", "one_compartment", "--until", "1 day", "--out", "no/such/dir/x.csv"],
     "does not exist"),
    (["simulate", "one_compartment", "--until", "1 day", "--out", "x.xlsx"], ".csv"),
    (["simulate", "one_compartment", "--until", "1 day", "--plot", "x.gif"], ".png"),
    (["simulate", ".", "--until", "1 day"], "folder"),
    (["run", "examples_missing/s.toml"], "no such file"),
    (["run", SHIPPED_SCENARIO, "--workers", "0"], "workers"),
    (["run", SHIPPED_SCENARIO, "--trial-size", "0"], "trial-size"),
    (["dose-response", "one_compartment", "--regimen", "{dose} iv", "--doses", "1..10 mL",
      "--metric", "max(C)", "--until", "1 day"], "mass"),
    (["dose-response", "one_compartment", "--regimen", "{dose} iv", "--doses", "1..10 mg",
      "--metric", "max(C", "--until", "1 day"], "metric"),
    (["sensitivity", "one_compartment", "--regimen", "1 mg iv", "--until", "1 day",
      "--metric", "max(C)", "--parameters", "VV"], "'VV'"),
    (["export", "one_compartment", "--format", "cellml", "-o", "x.xml"], "cellml"),
    *[([command, "phenobarbital", "pheno", *extra, *rest], fragment)
      for command, rest in (("fit", ["--estimate", "CL_per_kg", "--out", "f"]),
                            ("vpc", ["--params", "phenobarbital_fit", "--n", "10", "--out", "v.png"]))
      for extra, fragment in (
          (["--units", "TIME=h,AMT=mg,DV=mg/L,WGT=kg"], "no model output for it"),
          (["--units", "TIME=h,AMT=mL,DV=mg/L,WGT=kg", "--observe", "C"], "must be a mass"),
          (["--units", "AMT=mg,DV=mg/L,WGT=kg", "--observe", "C"], "TIME needs a unit"),
          (["--units", "TIME=h,AMT=mg,DV=mL,WGT=kg", "--observe", "C"], "DV is in mL"),
          (["--units", "TIME=h,AMT=mg,DV=mg/L,WGT=kg", "--observe", "Cx"], "'Cx'"),
          (["--units", "TIME=h,AMT=mg,DV=mg/L,WGT=L", "--observe", "C"], "WGT"),
          (["--units", "TIME=h,AMT=mg,DV=mg/L", "--observe", "C"], "WGT"),
          (["--units", "TIME=h,AMT=mg,DV=mg/L,WGT=kg", "--observe", "C", "--route", "oral"],
           "oral"),
          (["--units", "TIME:h", "--observe", "C"], "--units expects"),
      )],
    (["fit", "phenobarbital", "pheno", "--units", "TIME=h,AMT=mg,DV=mg/L,WGT=kg",
      "--observe", "C", "--estimate", "CLX", "--out", "f"], "not a parameter"),
    (["fit", "phenobarbital", "pheno", "--units", "TIME=h,AMT=mg,DV=mg/L,WGT=kg",
      "--observe", "C", "--estimate", "CL_per_kg", "--bounds", "CL_per_kg=1..2 L",
      "--out", "f"], "dimension"),
    (["fit", "phenobarbital", "no_such.csv", "--estimate", "CL_per_kg", "--out", "f"],
     "no such file"),
    (["vpc", "phenobarbital", "pheno", "--units", "TIME=h,AMT=mg,DV=mg/L,WGT=kg",
      "--observe", "C", "--n", "0", "--out", "v.png"], "must be an integer >= 10"),
    (["vpc", "phenobarbital", "pheno", "--units", "TIME=h,AMT=mg,DV=mg/L,WGT=kg",
      "--observe", "C", "--out", "v.gif"], ".png"),
    (["vpc", "phenobarbital", "pheno", "--units", "TIME=h,AMT=mg,DV=mg/L,WGT=kg",
      "--observe", "C", "--out", "v.png"], "no residual error model for C"),
]


@pytest.mark.parametrize(("args", "fragment"), CLI,
                         ids=[" ".join(a[:3])[:40] for a, _ in CLI])
def test_bad_command_line(args, fragment, tmp_path, capsys):
    err = one_line_exit_2(args, tmp_path, capsys)
    assert fragment in err, err


# ---- API calls ---------------------------------------------------------------------------

API = [
    ("regimen grammar", lambda: mechsim.Regimen.parse("100 mg iv on days"), RegimenError,
     "regimen"),
    ("dose of volume", lambda: mechsim.simulate("one_compartment", "10 mL iv", until="1 day"),
     RegimenError, "mass"),
    ("mg/kg without body weight", lambda: mechsim.simulate("one_compartment", "1 mg/kg iv",
                                                           until="1 day"),
     RegimenError, "body weight"),
    ("until zero", lambda: mechsim.simulate("one_compartment", until="0 day"),
     ValidationError, "after 0"),
    ("output times after until", lambda: mechsim.simulate("one_compartment", until="2 day",
                                                          times=["1 day", "3 day"]),
     ValidationError, "output times must lie in [0, 2] day"),
    ("non-positive rtol", lambda: mechsim.simulate("one_compartment", until="1 day", rtol=0),
     ValidationError, "rtol"),
    ("unknown method", lambda: mechsim.simulate("one_compartment", until="1 day",
                                                method="Euler"),
     ValidationError, "Euler"),
    ("unknown model", lambda: mechsim.load_model("cd40_ap"), ValidationError,
     "did you mean 'cd40_apc'"),
    ("unknown output", lambda: mechsim.simulate("one_compartment", until="1 day")["Cx"],
     ValidationError, "no output named 'Cx'"),
    ("NaN override", lambda: mechsim.simulate("one_compartment", until="1 day",
                                              overrides={"V": float("nan")}),
     mechsim.MechsimError, "V"),
    ("batch with mismatched columns",
     lambda: mechsim.simulate_many("one_compartment", parameters={"V": ["1 L", "2 L"],
                                                                  "CL": ["1 L/day"]},
                                   until="1 day"), ValidationError, "runs"),
    ("batch workers zero", lambda: mechsim.simulate_many("one_compartment", until="1 day",
                                                         workers=0),
     ValidationError, "workers"),
    ("population sample of zero", lambda: mechsim.load_population("icaria_population")
     .sample(mechsim.load_model("cd38_myeloma"), 0, seed=1), ValidationError, "n"),
]


@pytest.mark.parametrize(("case", "call", "error", "fragment"), API, ids=[c[0] for c in API])
def test_bad_api_call(case, call, error, fragment):
    with pytest.raises(error) as info:
        call()
    assert fragment in str(info.value)


# ---- the solver --------------------------------------------------------------------------

BLOW_UP = variant('k = { value = "0.1 1/day", source = "test" }',
                  'k = { value = "0.1 1/day", source = "test" }\nc1 = "1 nM"').replace(
    'rate = "CL*C"', 'rate = "-k*C*C*V/c1"')


def test_a_blow_up_names_time_state_and_hint(model_file, tmp_path, capsys):
    """dC/dt = k C^2 / (1 nM) from C0 = 10 nM reaches infinity at t = 1/(k C0/1 nM) = 1 day:
    no method can pass it, and the error says when, which state, and what to try."""
    path = model_file(BLOW_UP)
    with pytest.raises(SolverError) as info:
        mechsim.simulate(path, "30 nmol iv", until="3 day")
    message = str(info.value)
    t = float(message.split("t = ")[1].split(maxsplit=1)[0])
    assert 0.85 < t <= 1.0 + 1e-6
    assert "C" in message and "hint" in message and "\n" not in message
    err = one_line_exit_2(["simulate", str(path), "--regimen", "30 nmol iv", "--until",
                           "3 day", "--out", "never.csv"], tmp_path, capsys)
    assert "t = " in err



# ---- found by trying what a careless or hostile user would -------------------------------

def scenario_file(model_file, head="", body=""):
    return model_file(textwrap.dedent(f"""
        [scenario]
        {head}
        model = "one_compartment"
        until = "2 day"
        every = "1 day"
        outputs = ["C_mass"]

        [arms.a]
        regimen = "1 mg iv"
        {body}
        """), "s.toml")


@pytest.mark.parametrize("name", ["../x", "/tmp/x", "a/b", ".hidden", "", "x" * 101])
def test_a_scenario_name_never_becomes_a_path(name, model_file, tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    path = scenario_file(model_file, head=f'name = "{name}"')
    with pytest.raises(ParseError, match=r"s\.toml:3: scenario\.name must be a plain name"):
        mechsim.scenario.read_scenario(path)
    err = one_line_exit_2(["run", str(path)], work, capsys)
    assert "scenario.name must be a plain name" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml", "work"]


def test_a_scenario_file_name_that_is_no_plain_name_gives_a_plain_default(model_file, tmp_path):
    path = scenario_file(model_file)
    odd = path.rename(tmp_path / ".my scenario (v2).toml")
    assert mechsim.scenario.read_scenario(odd).name == "my_scenario__v2_"


@pytest.mark.parametrize("args", [
    ["simulate", "one_compartment", "--until", "1 day", "--out", "afile/x.csv"],
    ["simulate", "one_compartment", "--until", "1 day", "--plot", "afile/x.png"],
    ["run", "iscalimab_q4w", "--out", "afile/run"],
    ["run", "iscalimab_q4w", "--out", "afile/deeper/run"],
    ["dose-response", "one_compartment", "--regimen", "{dose} iv", "--doses", "1..10 mg",
     "--metric", "max(C)", "--until", "1 day", "--out", "afile/dr.csv"],
])
def test_out_below_a_regular_file(args, tmp_path, capsys):
    (tmp_path / "afile").write_text("not a folder")
    err = one_line_exit_2(args, tmp_path, capsys)
    assert "afile is a file, not a folder" in err


def test_out_below_a_regular_file_through_the_api(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(ValidationError, match="is a file, not a folder"):
        mechsim.scenario.run_scenario("iscalimab_q4w", tmp_path / "afile" / "run")
    res = mechsim.simulate("one_compartment", until="1 day")
    with pytest.raises(ValidationError, match="is a file, not a folder"):
        res.to_csv(tmp_path / "afile" / "x.csv")


@pytest.mark.parametrize("value", [
    mechsim.Quantity(np.array([0.1, 0.2]), "L/day"),
    mechsim.Quantity(np.ones((2, 2)), "L/day"),
])
def test_an_array_override_is_one_clear_error(value):
    with pytest.raises(UnitError, match=r"parameter CL must be a single value, got an array "
                                        r"of shape \(2(, 2)?,?\)"):
        mechsim.simulate("one_compartment", "1 mg iv", until="1 day", overrides={"CL": value})
    with pytest.raises(UnitError, match="single value"):
        mechsim.load_model("one_compartment").with_parameters({"CL": value})


def test_a_list_override_on_the_command_line(tmp_path, capsys):
    err = one_line_exit_2(["simulate", "one_compartment", "--until", "1 day", "--set",
                           "CL=0.1 L/day, 0.2 L/day"], tmp_path, capsys)
    assert "parameter CL" in err


HOURLY_FOR_A_CENTURY = "10 mg iv every 1 h x 1000000000"


def test_a_regimen_with_too_many_doses_is_refused_at_once(tmp_path, capsys):
    with pytest.raises(RegimenError, match=r"876,600 doses before day 36525, more than the "
                                           r"100,000 one run may have"):
        mechsim.simulate("one_compartment", HOURLY_FOR_A_CENTURY, until="100 years")
    err = one_line_exit_2(["simulate", "one_compartment", "--regimen", HOURLY_FOR_A_CENTURY,
                           "--until", "100 years", "--out", "x.csv"], tmp_path, capsys)
    assert "100,000 one run may have" in err


def test_too_many_runs_or_too_much_output_is_refused_at_once():
    many = {"V": mechsim.Quantity(np.full(1_000_001, 10.0), "L")}
    with pytest.raises(ValidationError, match=r"1,000,001 runs in one call, more than "
                                              r"1,000,000"):
        mechsim.simulate_many("one_compartment", "1 mg iv", parameters=many, until="1 day")
    million = {"V": mechsim.Quantity(np.full(1_000_000, 10.0), "L")}
    with pytest.raises(ValidationError, match=r"1,000,000 runs x 3 states x 1,001 output "
                                              r"times would be 24 GB of output"):
        mechsim.simulate_many("one_compartment", "1 mg iv", parameters=million, until="1 day")


def test_dose_times_have_no_drift_and_none_falls_on_until():
    res = mechsim.simulate("one_compartment", "1 mg iv every 1 min x 1000000000",
                           until="1 day", every="1 h")
    doses = res.pre_dose_days
    assert len(doses) == 1440 and doses[-1] == 1439 / 1440


# SBML with a document type: entities can read local files or expand without bound
ENTITY_SBML = [
    ("external entity", '<?xml version="1.0"?>\n<!DOCTYPE sbml [<!ENTITY x SYSTEM '
                        '"file:///etc/passwd">]>\n<sbml><model id="m">&x;</model></sbml>'),
    ("parameter entity", '<?xml version="1.0"?>\n<!DOCTYPE sbml [<!ENTITY % p SYSTEM '
                         '"http://example.invalid/x.dtd"> %p;]>\n<sbml/>'),
    ("nested entities", '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n<!ENTITY a "aaaaaaaaaa">\n'
                        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>\n<sbml>&b;</sbml>'),
    ("external DTD", '<?xml version="1.0"?>\n<!DOCTYPE sbml SYSTEM "sbml.dtd">\n<sbml/>'),
]


@pytest.mark.parametrize(("case", "text"), ENTITY_SBML, ids=[c[0] for c in ENTITY_SBML])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_sbml_with_a_doctype_is_refused(case, text, encoding, tmp_path, capsys):
    pytest.importorskip("libsbml")
    path = tmp_path / "model.xml"
    path.write_bytes(text.encode(encoding))
    with pytest.raises(ParseError, match=r"model\.xml: line 2: a <!DOCTYPE declaration is "
                                         r"not allowed in SBML"):
        mechsim.load_model(path)
    err = one_line_exit_2(["simulate", str(path), "--until", "1 day"], tmp_path, capsys)
    assert "DOCTYPE" in err


MISSING = [
    ("numba", lambda: mechsim.simulate("one_compartment", until="1 day", method="NDF"),
     "method 'NDF' (the compiled engine) needs numba", '"mechsim[fast]"'),
    ("pandas", lambda: mechsim.simulate("one_compartment", until="1 day").to_dataframe(),
     "Result.to_dataframe needs pandas", '"mechsim[pandas]"'),
    ("SALib", lambda: mechsim.sobol_indices("one_compartment", "1 mg iv", "max(C)",
                                            ["V", "CL"], until="1 day", n=8),
     "Sobol indices needs SALib", '"mechsim[sensitivity]"'),
    ("lifelines", lambda: mechsim.scenario.run_scenario("icaria_mm", "never"),
     "survival summaries (Kaplan-Meier, Cox hazard ratios) needs lifelines",
     '"mechsim[survival]"'),
    ("libsbml", lambda: mechsim.io.sbml.export_sbml("one_compartment"),
     "SBML support needs python-libsbml", '"mechsim[sbml]"'),
]


@pytest.fixture
def without(monkeypatch):
    """Make an optional package look uninstalled."""
    def hide(module):
        for name in list(sys.modules):
            if name == module or name.startswith(module + "."):
                monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, module, None)
        if module == "numba":
            from mechsim.solvers import ndf_kernel
            monkeypatch.setattr(ndf_kernel, "numba", None)
    return hide


@pytest.mark.parametrize(("module", "call", "fragment", "extra"), MISSING,
                         ids=[c[0] for c in MISSING])
def test_a_missing_optional_package_is_one_line_with_the_install_command(
        module, call, fragment, extra, without):
    without(module)
    with pytest.raises(mechsim.MissingDependency) as info:
        call()
    message = str(info.value)
    assert message.startswith(fragment) and f"pip install {extra}" in message, message
    assert "\n" not in message and isinstance(info.value, ImportError)


@pytest.mark.parametrize(("module", "args", "fragment"), [
    ("SALib", ["sensitivity", "one_compartment", "--regimen", "1 mg iv", "--until", "1 day",
               "--metric", "max(C)", "--method", "sobol", "--vary", "V,CL", "--n", "8"],
     "Sobol indices needs SALib"),
    ("lifelines", ["run", "icaria_mm", "--out", "r"], "needs lifelines"),
    ("libsbml", ["export", "one_compartment", "-o", "m.xml"], "needs python-libsbml"),
    ("distributed", ["run", "iscalimab_q4w", "--out", "r", "--scheduler", "tcp://x:1"],
     "--scheduler (a Dask cluster) needs distributed"),
])
def test_a_missing_optional_package_on_the_command_line(module, args, fragment, without,
                                                        tmp_path, capsys):
    without(module)
    err = one_line_exit_2(args, tmp_path, capsys)
    assert fragment in err and "pip install" in err
