"""SBML export/import (mechsim.io.sbml): validation, libRoadRunner cross-checks, round trips.

Needs the ``sbml`` extra (python-libsbml, libroadrunner), which the test extra includes.
"""

import re
import warnings

import numpy as np
import pytest

import mechsim
from mechsim.errors import ParseError, UnitError, UnitWarning, ValidationError
from mechsim.io import builtin_names
from mechsim.io.sbml import (
    export_sbml,
    import_sbml_text,
    parse_sbml,
    read_sbml,
    sbml_warnings,
    validate_sbml,
    write_sbml,
)
from mechsim.units import canonical_unit

libsbml = pytest.importorskip("libsbml")

ICARIA = ("10 mg/kg iv over 1 h on days 1,8,15,22 of 28-day cycle x 1 then on days 1,15 of "
          "28-day cycles; 4 mg oral on days 1-21 of 28-day cycles")
CD40 = "10 mg/kg iv over 30 min every 4 weeks x 3; 3 mg/kg sc every 2 weeks x 2"
ROUND_TRIP_REGIMENS = {
    "cd38_myeloma": "10 mg/kg iv over 1 h every 14 days x 3; 4 mg oral on days 1-21 of "
                    "28-day cycles",
    "cd40_apc": CD40,
    "isatuximab_poppk": "10 mg/kg iv over 1 h every 7 days x 4",
    "one_compartment": "100 mg iv every 12 h x 6; 50 mg oral every 24 h x 3",
    "phenobarbital": "20 mg iv; 3 mg iv every 12 h x 20",
}
TIGHT = {"rtol": 1e-10, "atol": 1e-14}


def max_rel_error(mine: np.ndarray, theirs: np.ndarray, floor: float = 1e-8) -> float:
    """Largest relative difference where |mine| is above ``floor`` times its maximum."""
    scale = np.max(np.abs(mine))
    mask = np.abs(mine) > floor * scale
    if not mask.any():
        return 0.0
    return float(np.max(np.abs(theirs[mask] - mine[mask]) / np.abs(mine[mask])))


def l3(node) -> str:
    """Formula text of an SBML math tree, without the units of numbers."""
    settings = libsbml.L3ParserSettings()
    settings.setParseUnits(False)
    return libsbml.formulaToL3StringWithSettings(node, settings)


def sbml_per_volume(model, name: str) -> bool:
    """True if the exported species is a concentration in SBML (hasOnlySubstanceUnits=false)."""
    s = model.species_by_name[name]
    return model.is_concentration(name) or (
        s.compartment is None and dict((1 * s.unit).dimensionality).get("[length]", 0) <= -3)


# ---------------------------------------------------------------------------- export
@pytest.mark.parametrize("name", builtin_names("models"))
def test_every_shipped_model_exports_valid_sbml(name):
    text = export_sbml(name)
    assert validate_sbml(text) == []
    doc = libsbml.readSBMLFromString(text)
    assert (doc.getLevel(), doc.getVersion()) == (3, 2)
    sm = doc.getModel()
    model = mechsim.load_model(name)
    assert sm.getId() == model.name
    day = sm.getUnitDefinition(sm.getTimeUnits())
    assert day.getNumUnits() == 1
    u = day.getUnit(0)
    assert (libsbml.UnitKind_toString(u.getKind()), u.getMultiplier(), u.getExponent()) == \
        ("second", 86400.0, 1)
    for i in range(sm.getNumParameters()):
        assert sm.getParameter(i).isSetUnits(), sm.getParameter(i).getId()
    for i in range(sm.getNumCompartments()):
        assert sm.getCompartment(i).isSetUnits(), sm.getCompartment(i).getId()
    for i in range(sm.getNumSpecies()):
        sp = sm.getSpecies(i)
        assert sp.isSetSubstanceUnits(), sp.getId()
        assert sp.getHasOnlySubstanceUnits() != sbml_per_volume(model, sp.getId())
    assert sm.getNumReactions() == len(model.reactions)
    assert sm.getNumRules() == len(model.rules)
    assert sm.getNumEvents() == 0


def test_values_and_units_are_canonical():
    text = export_sbml("one_compartment")
    sm = libsbml.readSBMLFromString(text).getModel()
    assert sm.getParameter("MW").getValue() == pytest.approx(150e3 / 1e9)  # g/nmol
    assert sm.getParameter("CL").getValue() == pytest.approx(6.931471805599453)  # L/day
    nM = sm.getUnitDefinition(sm.getSpecies("C").getSubstanceUnits())
    assert [(libsbml.UnitKind_toString(u.getKind()), u.getScale(), u.getExponent())
            for u in nM.getListOfUnits()] == [("mole", -9, 1)]
    assert sm.getParameter("C_mass").getUnits() == "g_per_L"
    conc = sm.getUnitDefinition("g_per_L")
    assert [(libsbml.UnitKind_toString(u.getKind()), u.getScale(), u.getExponent())
            for u in conc.getListOfUnits()] == [("gram", 0, 1), ("metre", -1, -3)]
    assert sm.getSpecies("C").getHasOnlySubstanceUnits() is False
    assert sm.getSpecies("depot").getCompartment() == "amounts"
    # the kinetic law of a concentration-only reaction is multiplied by its compartment
    law = libsbml.formulaToL3String(sm.getReaction("elimination").getKineticLaw().getMath())
    assert law == "CL * C"
    assert sm.getExtentUnits() == "nmol"


def test_non_integer_exponents_time_and_names_that_clash_in_sbml(write_model):
    path = write_model("""
[model]
name = "clash"
[parameters]
pi = "3 L"
e = "0.5"
time = "2 1/day"
avogadro = "1e-3 1/day"
central = "7"
amounts = "1 nmol/day"
A0 = "2 nM"
Wk = "2 kg**0.75"
[compartments]
central = "pi"
[species.A]
compartment = "central"
unit = "uM"
initial = "A0*central*e"
[species.amounts_x]
unit = "nmol"
initial = "3 nmol"
[species.X]
unit = "cell/uL"
initial = "5 cell/uL"
[rules]
F = "log(1 + e)*log10(10*e)*sqrt(e)/e**2**0.5 + (e*2)**0.5 + 2**-e + Wk/Wk"
G = { expr = "exp(-avogadro*t)", unit = "" }
[reactions.A]
equation = "A ->"
rate = "time*A*F*G"
[reactions.syn]
equation = "-> amounts_x"
rate = "amounts*(1 + 0.1*t*avogadro)"
[reactions.X]
equation = "X ->"
rate = "avogadro*X"
[routes]
iv = "A"
""", "clash.toml")
    model = mechsim.load_model(path)
    text = export_sbml(model, "5 nmol iv every 1 day x 3; 2 nmol iv over 3 h every 2 days x 2",
                       until="5 day")
    assert validate_sbml(text) == []
    # ids that clash with species/parameters are renamed; names are kept
    assert re.findall(r'<compartment id="(\w+)"', text) == ["central_2", "amounts_2"]
    assert '<reaction id="A_2" name="A"' in text
    sm = libsbml.readSBMLFromString(text).getModel()
    wk = sm.getUnitDefinition(sm.getParameter("Wk").getUnits())
    assert [(libsbml.UnitKind_toString(u.getKind()), u.getExponentAsDouble())
            for u in wk.getListOfUnits()] == [("gram", 0.75)]
    # `t` is the time csymbol; the parameters called time, pi, e, avogadro stay parameters
    g = sm.getAssignmentRuleByVariable("G").getMath()
    assert libsbml.formulaToL3String(g) == "exp(-avogadro * time)"
    kinds = []

    def walk(node):
        kinds.append((node.getType(), node.getName()))
        for i in range(node.getNumChildren()):
            walk(node.getChild(i))

    walk(g)
    assert (libsbml.AST_NAME_TIME, "time") in kinds
    assert (libsbml.AST_NAME, "avogadro") in kinds
    f = l3(sm.getAssignmentRuleByVariable("F").getMath())
    assert f == ("ln(1 + e) * log10(10 * e) * sqrt(e) / e^(2^0.5) + (e * 2)^0.5 + 2^-e "
                 "+ Wk / Wk")  # a**b**c is a**(b**c); libsbml reads a^b^c as (a^b)^c

    back = parse_sbml(export_sbml(model))
    assert [(c.name, c.volume) for c in back.compartments] == \
        [(c.name, c.volume) for c in model.compartments]
    assert [r.expr.text for r in back.rules][1] == "exp(-avogadro*t)"
    assert [(p.name, p.value.units) for p in back.parameters] == \
        [(p.name, p.value.units) for p in model.parameters]
    a = mechsim.simulate(model, "5 nmol iv every 1 day x 3", until="5 day", every="0.5 day")
    b = mechsim.simulate(back, "5 nmol iv every 1 day x 3", until="5 day", every="0.5 day")
    for name in (*a.state_names, *a.observable_names):
        np.testing.assert_allclose(b[name].to(a[name].units).magnitude, a[name].magnitude,
                                   rtol=1e-12)


def test_doses_become_one_event_per_time():
    text = export_sbml("one_compartment", "100 mg iv every 12 h x 2; 30 mg iv over 2 h; "
                       "50 mg oral every 12 h x 2", until="2 day")
    assert validate_sbml(text) == []
    sm = libsbml.readSBMLFromString(text).getModel()
    events = [sm.getEvent(i) for i in range(sm.getNumEvents())]
    triggers = [libsbml.formulaToL3String(e.getTrigger().getMath()) for e in events]
    # (libsbml writes numbers with 15 significant digits)
    assert triggers == ["time >= 0 day", "time >= 0.0833333333333333 day", "time >= 0.5 day"]
    first = events[0]
    assert first.getTrigger().getInitialValue() is False  # so a dose at t = 0 fires
    assert first.getTrigger().getPersistent() is True
    assert first.getUseValuesFromTriggerTime() is True
    assigned = {first.getEventAssignment(i).getVariable(): l3(
        first.getEventAssignment(i).getMath()) for i in range(first.getNumEventAssignments())}
    # 100 mg of a 150 kDa drug into 10 L: +66.67 nM; 50 mg into the depot: +333.3 nmol;
    # 30 mg over 2 h: 200 nmol in 1/12 day = 2400 nmol/day
    assert assigned["C"].startswith("C + 66.666666666")
    assert assigned["depot"].startswith("depot + 333.33333333")
    assert float(assigned["infusion_rate_C"]) == pytest.approx(2400)
    ends = {events[1].getEventAssignment(i).getVariable(): l3(
        events[1].getEventAssignment(i).getMath())
        for i in range(events[1].getNumEventAssignments())}
    assert ends == {"infusion_rate_C": "0"}
    assert libsbml.formulaToL3String(
        sm.getReaction("infusion_C").getKineticLaw().getMath()) == "infusion_rate_C"


def test_a_regimen_needs_until():
    with pytest.raises(ValidationError, match="until"):
        export_sbml("one_compartment", "100 mg iv")


def test_write_sbml_and_read_sbml(tmp_path):
    path = write_sbml("cd40_apc", tmp_path / "cd40.xml")
    model = read_sbml(path)
    assert model.name == "cd40_apc"
    assert model.source == str(path)
    assert [(r.name, r.target) for r in model.routes] == [("iv", "D"), ("sc", "depot")]


# ---------------------------------------------------------------------------- roadrunner
@pytest.mark.parametrize(("name", "regimen"), [("cd38_myeloma", ICARIA), ("cd40_apc", CD40)])
def test_roadrunner_agrees_with_mechsim(name, regimen):
    roadrunner = pytest.importorskip("roadrunner")
    model = mechsim.load_model(name)
    text = export_sbml(model, regimen, until="12 weeks")
    assert validate_sbml(text) == []
    mine = mechsim.simulate(model, regimen, until="12 weeks", every="1 day", **TIGHT)
    rr = roadrunner.RoadRunner(text)
    rr.integrator.relative_tolerance = 1e-10
    rr.integrator.absolute_tolerance = 1e-14
    rr.integrator.maximum_num_steps = 1_000_000
    names = [s.name for s in model.species]
    rr.timeCourseSelections = ["time"] + [f"[{n}]" if sbml_per_volume(model, n) else n
                                          for n in names]
    out = np.asarray(rr.simulate(0, 84, 85))
    np.testing.assert_allclose(out[:, 0], mine.time_days, rtol=0, atol=1e-9)
    errors = {}
    for k, n in enumerate(names, start=1):
        theirs = out[:, k]
        ours = mine[n].to(canonical_unit(mine[n])).magnitude
        errors[n] = max_rel_error(ours, theirs)
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-5, f"{worst}: {errors[worst]:.3g} ({errors})"


# ---------------------------------------------------------------------------- import
@pytest.mark.parametrize("name", builtin_names("models"))
def test_round_trip_keeps_the_model(name, tmp_path):
    model = mechsim.load_model(name)
    path = write_sbml(model, tmp_path / f"{name}.xml")
    back = read_sbml(path)
    assert back.name == model.name
    assert back.description == model.description
    assert back.time_unit == model.time_unit
    assert [s.name for s in back.species] == [s.name for s in model.species]
    assert [s.unit for s in back.species] == [s.unit for s in model.species]
    assert [s.compartment for s in back.species] == [s.compartment for s in model.species]
    for p, q in zip(model.parameters, back.parameters, strict=True):  # sources, notes too
        assert (q.name, q.value.units, q.source, q.note) == \
            (p.name, p.value.units, p.source, p.note)
        assert q.value.magnitude == pytest.approx(p.value.magnitude, rel=1e-14)
    assert [(r.name, r.expr.text, r.unit) for r in back.rules] == \
        [(r.name, r.expr.text, r.unit) for r in model.rules]
    assert [(r.name, r.reactants, r.products, r.rate.text) for r in back.reactions] == \
        [(r.name, r.reactants, r.products, r.rate.text) for r in model.reactions]
    assert back.routes == model.routes
    assert [d.name for d in back.drugs] == [d.name for d in model.drugs]

    regimen = ROUND_TRIP_REGIMENS[name]
    a = mechsim.simulate(model, regimen, until="8 weeks", every="1 day", **TIGHT)
    b = mechsim.simulate(back, regimen, until="8 weeks", every="1 day", **TIGHT)
    for n in (*a.state_names, *a.observable_names):
        assert max_rel_error(a[n].magnitude, b[n].to(a[n].units).magnitude) < 1e-6, n


def test_routes_and_drugs_for_files_without_the_mechsim_annotation():
    doc = libsbml.readSBMLFromString(export_sbml("one_compartment"))
    doc.getModel().unsetAnnotation()  # as if written by another tool
    bare = parse_sbml(libsbml.writeSBMLToString(doc))
    assert bare.routes == () and bare.drugs == ()
    assert mechsim.Quantity(1, bare.species_by_name["C"].unit).to("nM").magnitude == 1
    model = parse_sbml(libsbml.writeSBMLToString(doc), routes={"iv": "C"},
                       drugs={"mab": "150 kDa"})
    assert model.routes[0].target == "C"
    a = mechsim.simulate("one_compartment", "100 mg iv", until="2 day", every="1 day")
    b = mechsim.simulate(model, "100 mg iv", until="2 day", every="1 day")
    np.testing.assert_allclose(b["C"].to("nM").magnitude, a["C"].to("nM").magnitude,
                               rtol=1e-8)


# A model written by hand in SBML Level 3 Version 1, the way other tools write them: mmol, mL,
# seconds, a function definition, a local parameter, a boundary species, an initial amount
# for a concentration species in a compartment whose size is computed, a time-dependent rule,
# a compartment used inside a formula, and a rate rule on a parameter.
FOREIGN = """<?xml version="1.0" encoding="UTF-8"?>
<sbml xmlns="http://www.sbml.org/sbml/level3/version1/core" level="3" version="1">
 <model id="foreign" name="hand-written test model" timeUnits="second" extentUnits="mmol">
  <listOfFunctionDefinitions>
   <functionDefinition id="mm"><math xmlns="http://www.w3.org/1998/Math/MathML"><lambda>
    <bvar><ci>V</ci></bvar><bvar><ci>S</ci></bvar><bvar><ci>K</ci></bvar>
    <apply><divide/><apply><times/><ci>V</ci><ci>S</ci></apply>
     <apply><plus/><ci>K</ci><ci>S</ci></apply></apply></lambda></math></functionDefinition>
  </listOfFunctionDefinitions>
  <listOfUnitDefinitions>
   <unitDefinition id="mmol"><listOfUnits>
    <unit kind="mole" exponent="1" scale="-3" multiplier="1"/></listOfUnits></unitDefinition>
   <unitDefinition id="mM"><listOfUnits><unit kind="mole" exponent="1" scale="-3" multiplier="1"/>
    <unit kind="litre" exponent="-1" scale="0" multiplier="1"/></listOfUnits></unitDefinition>
   <unitDefinition id="mM_per_s"><listOfUnits>
    <unit kind="mole" exponent="1" scale="-3" multiplier="1"/>
    <unit kind="litre" exponent="-1" scale="0" multiplier="1"/>
    <unit kind="second" exponent="-1" scale="0" multiplier="1"/></listOfUnits></unitDefinition>
   <unitDefinition id="per_s"><listOfUnits>
    <unit kind="second" exponent="-1" scale="0" multiplier="1"/></listOfUnits></unitDefinition>
   <unitDefinition id="per_mM_per_s"><listOfUnits>
    <unit kind="mole" exponent="-1" scale="-3" multiplier="1"/>
    <unit kind="litre" exponent="1" scale="0" multiplier="1"/>
    <unit kind="second" exponent="-1" scale="0" multiplier="1"/></listOfUnits></unitDefinition>
   <unitDefinition id="mmol_per_mL"><listOfUnits>
    <unit kind="mole" exponent="1" scale="-3" multiplier="1"/>
    <unit kind="litre" exponent="-1" scale="-3" multiplier="1"/></listOfUnits></unitDefinition>
   <unitDefinition id="mL"><listOfUnits>
    <unit kind="litre" exponent="1" scale="-3" multiplier="1"/></listOfUnits></unitDefinition>
  </listOfUnitDefinitions>
  <listOfCompartments>
   <compartment id="cell" spatialDimensions="3" size="2" units="litre" constant="true"/>
   <compartment id="ext" spatialDimensions="3" units="mL" constant="true"/>
  </listOfCompartments>
  <listOfSpecies>
   <species id="S1" compartment="cell" initialConcentration="1" substanceUnits="mmol"
    hasOnlySubstanceUnits="false" boundaryCondition="false" constant="false"/>
   <species id="S2" compartment="cell" initialAmount="0.5" substanceUnits="mmol"
    hasOnlySubstanceUnits="false" boundaryCondition="false" constant="false"/>
   <species id="P" compartment="cell" initialAmount="0" substanceUnits="mmol"
    hasOnlySubstanceUnits="true" boundaryCondition="false" constant="false"/>
   <species id="B" compartment="ext" initialConcentration="0.2" substanceUnits="mmol"
    hasOnlySubstanceUnits="false" boundaryCondition="true" constant="false"/>
   <species id="E" compartment="ext" substanceUnits="mmol"
    hasOnlySubstanceUnits="false" boundaryCondition="false" constant="false"/>
   <species id="F" compartment="ext" initialAmount="0.01" substanceUnits="mmol"
    hasOnlySubstanceUnits="false" boundaryCondition="false" constant="false"/>
  </listOfSpecies>
  <listOfParameters>
   <parameter id="Vmax" value="0.02" units="mM_per_s" constant="true"/>
   <parameter id="Km" value="0.5" units="mM" constant="true"/>
   <parameter id="kin0" value="0.05" units="per_s" constant="true"/>
   <parameter id="tau" value="120" units="second" constant="true"/>
   <parameter id="kd" value="0.003" units="per_mM_per_s" constant="true"/>
   <parameter id="Vref" value="250" units="mL" constant="true"/>
   <parameter id="E0" value="0.0001" units="mmol_per_mL" constant="true"/>
   <parameter id="kin" units="per_s" constant="false"/>
   <parameter id="total" units="mmol" constant="false"/>
   <parameter id="X" value="1" units="dimensionless" constant="false"/>
   <parameter id="lambda" value="3" units="dimensionless" constant="true"/>
  </listOfParameters>
  <listOfInitialAssignments>
   <initialAssignment symbol="ext"><math xmlns="http://www.w3.org/1998/Math/MathML">
    <apply><times/><cn type="integer">2</cn><ci>Vref</ci></apply></math></initialAssignment>
   <initialAssignment symbol="E"><math xmlns="http://www.w3.org/1998/Math/MathML">
    <ci>E0</ci></math></initialAssignment>
  </listOfInitialAssignments>
  <listOfRules>
   <assignmentRule variable="kin"><math xmlns="http://www.w3.org/1998/Math/MathML">
    <apply><times/><ci>kin0</ci><apply><exp/><apply><divide/><apply><minus/>
     <csymbol encoding="text" definitionURL="http://www.sbml.org/sbml/symbols/time">t</csymbol>
    </apply><ci>tau</ci></apply></apply></apply></math></assignmentRule>
   <assignmentRule variable="total"><math xmlns="http://www.w3.org/1998/Math/MathML">
    <apply><plus/><apply><times/><apply><plus/><ci>S1</ci><ci>S2</ci></apply><ci>cell</ci>
    </apply><ci>P</ci></apply></math></assignmentRule>
   <rateRule variable="X"><math xmlns="http://www.w3.org/1998/Math/MathML">
    <apply><divide/><apply><times/><ci>lambda</ci><apply><minus/><ci>X</ci></apply></apply>
    <ci>tau</ci></apply></math></rateRule>
  </listOfRules>
  <listOfReactions>
   <reaction id="r1" reversible="false" fast="false">
    <listOfReactants><speciesReference species="S1" stoichiometry="1" constant="true"/>
    </listOfReactants>
    <listOfProducts><speciesReference species="S2" stoichiometry="1" constant="true"/>
    </listOfProducts>
    <kineticLaw><math xmlns="http://www.w3.org/1998/Math/MathML"><apply><times/><ci>cell</ci>
     <apply><ci>mm</ci><ci>Vmax</ci><ci>S1</ci><ci>Km</ci></apply></apply></math></kineticLaw>
   </reaction>
   <reaction id="r2" reversible="false" fast="false">
    <listOfReactants><speciesReference species="S2" stoichiometry="1" constant="true"/>
    </listOfReactants>
    <listOfProducts><speciesReference species="P" stoichiometry="1" constant="true"/>
    </listOfProducts>
    <kineticLaw><math xmlns="http://www.w3.org/1998/Math/MathML">
     <apply><times/><ci>k2</ci><ci>S2</ci><ci>cell</ci></apply></math>
     <listOfLocalParameters><localParameter id="k2" value="0.01" units="per_s"/>
     </listOfLocalParameters></kineticLaw>
   </reaction>
   <reaction id="r3" reversible="false" fast="false">
    <listOfReactants><speciesReference species="B" stoichiometry="1" constant="true"/>
    </listOfReactants>
    <listOfProducts><speciesReference species="S1" stoichiometry="1" constant="true"/>
    </listOfProducts>
    <kineticLaw><math xmlns="http://www.w3.org/1998/Math/MathML">
     <apply><times/><ci>ext</ci><ci>kin</ci><ci>B</ci></apply></math></kineticLaw>
   </reaction>
   <reaction id="r4" reversible="true" fast="false">
    <listOfReactants><speciesReference species="S1" stoichiometry="2" constant="true"/>
    </listOfReactants>
    <listOfProducts><speciesReference species="E" stoichiometry="1" constant="true"/>
    </listOfProducts>
    <kineticLaw><math xmlns="http://www.w3.org/1998/Math/MathML"><apply><times/><ci>kd</ci>
     <apply><power/><ci>S1</ci><cn type="integer">2</cn></apply>
     <apply><plus/><ci>cell</ci><apply><times/><cn>0</cn><ci>ext</ci></apply></apply>
     </apply></math></kineticLaw>
   </reaction>
   <reaction id="r5" reversible="false" fast="false">
    <listOfReactants><speciesReference species="F" stoichiometry="1" constant="true"/>
    </listOfReactants>
    <kineticLaw><math xmlns="http://www.w3.org/1998/Math/MathML">
     <apply><times/><ci>ext</ci><apply><divide/><ci>F</ci><ci>tau</ci></apply></apply>
    </math></kineticLaw>
   </reaction>
  </listOfReactions>
 </model>
</sbml>
"""
FOREIGN_OUTPUTS = [("S1", "mM"), ("S2", "mM"), ("P", "mmol"), ("B", "mmol/mL"),
                   ("E", "mmol/mL"), ("F", "mmol/mL"), ("total", "mmol"), ("X", ""),
                   ("kin", "1/s")]


def compare_with_roadrunner(text: str, model) -> dict[str, float]:
    roadrunner = pytest.importorskip("roadrunner")
    t = np.linspace(0, 600, 61)
    mine = mechsim.simulate(model, None, until="600 s", times=mechsim.Quantity(t, "s"), **TIGHT)
    rr = roadrunner.RoadRunner(text)
    rr.integrator.relative_tolerance = 1e-10
    rr.integrator.absolute_tolerance = 1e-14
    rr.timeCourseSelections = ["time"] + [
        f"[{n}]" if n in ("S1", "S2", "B", "E", "F") else n for n, _ in FOREIGN_OUTPUTS]
    out = np.asarray(rr.simulate(0, 600, 61))
    return {n: max_rel_error(mine[n].to(u).magnitude if u else mine[n].magnitude, out[:, k])
            for k, (n, u) in enumerate(FOREIGN_OUTPUTS, start=1)}


def test_a_foreign_model_imports_and_agrees_with_roadrunner():
    assert validate_sbml(FOREIGN) == []
    model = parse_sbml(FOREIGN, where="foreign.xml")
    assert model.name == "foreign" and model.description == "hand-written test model"
    assert model.time_unit == mechsim.ureg.s
    assert model.parameters_by_name["Km"].value.to("mM").magnitude == pytest.approx(0.5)
    assert model.parameters_by_name["r2_k2"].value.to("1/s").magnitude == pytest.approx(0.01)
    rates = {r.name: (r.rate.text, r.compartment) for r in model.reactions}
    assert rates["r1"] == ("Vmax*S1/(Km + S1)", "cell")  # function inlined, volume stripped
    assert rates["r3"] == ("kin*B", "ext")
    assert rates["r4"] == ("kd*S1**2*(cell + 0.0*ext)", None)  # volumes used as values
    assert rates["rate_rule_X"] == ("lambda_*-X/tau", None)  # keyword renamed
    assert {r.name: r.expr.text for r in model.rules}["kin"] == "kin0*exp(-t/tau)"
    assert [r.reactants for r in model.reactions][2] == ()  # boundary species B
    errors = compare_with_roadrunner(FOREIGN, model)
    assert max(errors.values()) < 1e-6, errors


def test_sbml_level_2_is_converted():
    doc = libsbml.readSBMLFromString(FOREIGN)
    assert doc.setLevelAndVersion(2, 4, False)
    text = libsbml.writeSBMLToString(doc)
    model = parse_sbml(text)
    errors = compare_with_roadrunner(text, model)
    assert max(errors.values()) < 1e-6, errors


def _variant(change) -> str:
    doc = libsbml.readSBMLFromString(FOREIGN)
    change(doc.getModel())
    return libsbml.writeSBMLToString(doc)


def _event(m):
    e = m.createEvent()
    e.setId("kick")
    e.setUseValuesFromTriggerTime(True)
    trigger = e.createTrigger()
    trigger.setMath(libsbml.parseL3Formula("time > 5"))
    trigger.setInitialValue(False)
    trigger.setPersistent(True)
    a = e.createEventAssignment()
    a.setVariable("S1")
    a.setMath(libsbml.parseL3Formula("2"))


def _law(formula):
    def change(m):
        m.getReaction("r2").getKineticLaw().setMath(libsbml.parseL3Formula(formula))
    return change


def _rule_on_s1(m):
    r = m.createRateRule()
    r.setVariable("S1")
    r.setMath(libsbml.parseL3Formula("-S1/tau"))


def _compartment_rule(m):
    m.getCompartment("cell").setConstant(False)
    r = m.createAssignmentRule()
    r.setVariable("cell")
    r.setMath(libsbml.parseL3Formula("2"))


def _ia_from_species(m):
    ia = m.createInitialAssignment()
    ia.setSymbol("Km")
    ia.setMath(libsbml.parseL3Formula("S1*2"))


@pytest.mark.parametrize(("change", "error", "message"), [
    (lambda m: m.createAlgebraicRule().setMath(libsbml.parseL3Formula("S1 - S2")), ParseError,
     "could not be inlined into the formulas that use it: The model is overdetermined"),
    (_rule_on_s1, ParseError, "rateRule for species 'S1': a rule on a species that reactions"),
    (_law("delay(S2, 1) * cell * k2"), ParseError, "kinetic law of r2: delay(...) is not"),
    (_law("k2 * P * cell"), UnitError, "reaction 'r2': kinetic law 'cell * (r2_k2*P)' has "
                                       "dimension [substance] * [length] ** 3 / [time]"),
    (lambda m: m.getReaction("r1").setFast(True), ParseError, "reaction 'r1': fast reactions"),
])
def test_unsupported_constructs_are_named(change, error, message):
    with pytest.raises(error) as info:
        parse_sbml(_variant(change), where="foreign.xml")
    text = str(info.value)
    assert text.startswith("foreign.xml: ")
    assert message in text
    assert "\n" not in text


def test_required_sbml_packages_are_refused():
    doc = libsbml.readSBMLFromString(FOREIGN)
    doc.setLevelAndVersion(3, 2, False)
    doc.enablePackage(libsbml.DistribExtension.getXmlnsL3V1V1(), "distrib", True)
    doc.setPackageRequired("distrib", True)
    with pytest.raises(ParseError,
                       match="distrib.xml: the model uses the SBML package 'distrib'"):
        parse_sbml(libsbml.writeSBMLToString(doc), where="distrib.xml")


def test_formerly_refused_constructs_now_import():
    """Events, piecewise, MathML functions, numbers with units, rules on compartment sizes,
    conversion factors and initial assignments from species read without error."""
    for change in (_event, _law("piecewise(k2, time > 3, 0) * S2 * cell"),
                   _law("abs(k2) * S2 * cell"), _law("0.01 per_s * S2 * cell"),
                   _compartment_rule, _ia_from_species,
                   lambda m: m.getSpecies("S1").setConversionFactor("lambda")):
        parse_sbml(_variant(change), where="foreign.xml")


def test_a_parameter_without_units_warns_once_and_strict_units_refuses():
    text = _variant(lambda m: m.getParameter("Km").unsetUnits())
    with pytest.warns(UnitWarning, match="units not declared for parameter 'Km'") as got:
        parse_sbml(text, where="foreign.xml")
    assert len([w for w in got if issubclass(w.category, UnitWarning)]) == 1
    with pytest.raises(ParseError, match="foreign.xml: parameter 'Km' has no units"):
        parse_sbml(text, where="foreign.xml", strict_units=True)


def test_a_dosed_export_reads_back_with_its_doses_as_events(tmp_path):
    path = write_sbml("one_compartment", tmp_path / "dosed.xml", "100 mg iv", until="1 day")
    back = read_sbml(path)
    assert [e.name for e in back.events] == ["dose_1"]
    a = mechsim.simulate("one_compartment", "100 mg iv", until="1 day", every="0.25 day",
                         rtol=1e-10)
    b = mechsim.simulate(back, until="1 day", every="0.25 day", rtol=1e-10, method="LSODA")
    np.testing.assert_allclose(b["C"].to("nM").magnitude, a["C"].to("nM").magnitude,
                               rtol=1e-7)


@pytest.mark.parametrize(("content", "message"), [
    ('<sbml><model id="x"', "not well-formed XML (line 1): Unclosed XML token."),
    ("<html><body>hi</body></html>", "not an SBML document (line 1)"),
    ('[model]\nname = "x"\n', "not well-formed XML"),
    ("", "not well-formed XML"),
])
def test_bad_files_give_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.xml"
    path.write_text(content)
    with pytest.raises(ParseError) as info:
        read_sbml(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ")
    assert message in text
    assert "\n" not in text


def test_missing_file():
    with pytest.raises(ParseError, match="no such file: nowhere.xml"):
        read_sbml("nowhere.xml")


def _load_model_reads_sbml() -> bool:
    import inspect

    from mechsim.io import model_file
    return "sbml" in inspect.getsource(model_file.load_model)


@pytest.mark.skipif(not _load_model_reads_sbml(),
                    reason="mechsim.load_model does not dispatch .xml/.sbml to read_sbml yet")
def test_load_model_reads_sbml_files(tmp_path):
    path = write_sbml("one_compartment", tmp_path / "one.xml")
    assert mechsim.load_model(path) == read_sbml(path)
    assert mechsim.load_model(str(path)).name == "one_compartment"


def test_validate_sbml_reports_errors_and_warnings():
    assert sbml_warnings(export_sbml("one_compartment")) == []
    warnings = sbml_warnings(export_sbml("cd38_myeloma"))
    # nmol, cell counts (dimensionless) and g in one model: no single SBML extent unit
    assert warnings and all(w.startswith("warning ") for w in warnings)
    assert {w.split()[1].rstrip(",") for w in warnings} == {"10503", "99507"}
    # each message names the element it concerns (here the reaction), else the line
    concerned = {w.split(": ")[0].split(", ", 1)[1] for w in warnings}
    assert "reaction 'tumour_growth'" in concerned
    assert all(c.startswith(("reaction '", "line ")) for c in concerned)
    broken = export_sbml("one_compartment").replace('compartment="central"',
                                                    'compartment="nowhere"', 1)
    errors = validate_sbml(broken)
    assert errors and errors[0].startswith("error ")
    assert "nowhere" in " ".join(errors)


# ---------------------------------------------------------------------------- events
def model_with_event():
    import dataclasses

    from mechsim.expr import Expr
    from mechsim.model import Event

    model = mechsim.load_model("one_compartment")
    boost = Event("boost", Expr('C_mass < "3 mg/L"', None, condition=True),
                  (("C", Expr('C + "10 nM"', None)),), delay=mechsim.Quantity(2, "h"))
    return dataclasses.replace(model, events=(boost,))


def test_model_events_are_written_as_sbml_events_and_roadrunner_agrees():
    # an independent engine runs the exported events: C falls through 3 mg/L (20 nM) at
    # log2(10/3) days, and 2 h later rises by 10 nM; the trigger fires again each time
    roadrunner = pytest.importorskip("roadrunner")
    model = model_with_event()
    text = export_sbml(model, "100 mg iv", until="5 day")
    assert validate_sbml(text) == []
    mine = mechsim.simulate(model, "100 mg iv", until="5 day", every="0.25 day", **TIGHT)
    assert len(mine.events) >= 2
    assert mine.events[0][0] == pytest.approx(np.log2(10 / 3) + 2 / 24, rel=1e-7)
    rr = roadrunner.RoadRunner(text)
    rr.integrator.relative_tolerance = 1e-10
    rr.integrator.absolute_tolerance = 1e-14
    rr.timeCourseSelections = ["time", "[C]"]
    out = np.asarray(rr.simulate(0, 5, 21))
    assert max_rel_error(mine["C"].to("nM").magnitude, out[:, 1]) < 1e-6


def test_dosing_rules_are_not_exported_as_if_they_were_doses():
    with pytest.raises(ValidationError, match="dosing rules"):
        export_sbml("one_compartment", '100 mg iv every 1 d x 3, skip if C > "1 nM"',
                    until="3 day")


@pytest.mark.parametrize("name", ["one_compartment", "cd40_apc", "cd38_myeloma"])
def test_an_exported_model_with_a_regimen_reads_back_and_simulates_the_same(name):
    # the regimen's doses are SBML events in the file: the model read back, run without a
    # regimen, must give what the original gives with it
    regimen = {"one_compartment": "100 mg iv every 12 h x 6; 50 mg oral every 24 h x 3; "
                                  "30 mg iv over 2 h at 1 d",
               "cd40_apc": CD40, "cd38_myeloma": ROUND_TRIP_REGIMENS["cd38_myeloma"]}[name]
    model = mechsim.load_model(name)
    back = parse_sbml(export_sbml(model, regimen, until="8 weeks"))
    assert back.events
    a = mechsim.simulate(model, regimen, until="8 weeks", every="1 day", **TIGHT)
    b = mechsim.simulate(back, None, until="8 weeks", every="1 day", **TIGHT)
    for n in a.state_names:
        assert max_rel_error(a[n].magnitude, b[n].to(a[n].units).magnitude) < 1e-6, n


def test_model_events_survive_the_round_trip():
    model = model_with_event()
    back = parse_sbml(export_sbml(model))
    assert [e.name for e in back.events] == ["boost"]
    a = mechsim.simulate(model, "100 mg iv", until="5 day", every="0.25 day", **TIGHT)
    b = mechsim.simulate(back, "100 mg iv", until="5 day", every="0.25 day", **TIGHT)
    assert [round(t, 9) for t, _ in a.events] == [round(t, 9) for t, _ in b.events]
    assert max_rel_error(a["C"].to("nM").magnitude, b["C"].to("nM").magnitude) < 1e-6


def test_a_reaction_id_gives_the_reaction_rate_in_extent_per_time():
    """SBML formulas may use a reaction's id as its rate, and tools compare rates by id:
    every reaction of an imported model has a value, in the model's extent/time units."""
    imported = import_sbml_text(FOREIGN, where="foreign.xml")
    assert imported.symbols["r2"].kind == "reaction"
    t = np.linspace(0, 600, 7)
    res = mechsim.simulate(imported.model, None, until="600 s", times=mechsim.Quantity(t, "s"),
                           **TIGHT)
    s2_mM = imported.values(res, "S2")
    # r2 = k2 * S2 * cell = 0.01/s * S2 [mM] * 2 L, in mmol/s (extentUnits mmol, second)
    np.testing.assert_allclose(imported.values(res, "r2"), 0.01 * s2_mM * 2.0, rtol=1e-9)
    f = imported.values(res, "F")  # mmol/mL; r5 = ext * F / tau, ext = 2 * Vref = 500 mL
    np.testing.assert_allclose(imported.values(res, "r5"), 500.0 * f / 120.0, rtol=1e-9)
    # without extentUnits, the unit libsbml derives from the law's values (mmol/s here)
    imported = import_sbml_text(_variant(lambda m: m.unsetExtentUnits()), where="f.xml")
    assert imported.symbols["r2"].unit.to("mmol/s").magnitude == pytest.approx(1.0)
    np.testing.assert_allclose(imported.values(res, "r2"), 0.01 * s2_mM * 2.0, rtol=1e-9)


def test_an_algebraic_rule_keeps_declared_units():
    """0 = 2*half - total (half in mmol) becomes half = total / 2, checked in units: the
    model still imports with every unit declared."""
    def add_half(m):
        p = m.createParameter()
        p.setId("half")
        p.setUnits("mmol")
        p.setConstant(False)
        m.createAlgebraicRule().setMath(libsbml.parseL3Formula("2*half - total"))

    with warnings.catch_warnings():
        warnings.simplefilter("error", UnitWarning)
        imported = import_sbml_text(_variant(add_half), where="foreign.xml")
    assert imported.undeclared == () and imported.symbols["half"].unit is not None
    t = np.linspace(0, 600, 7)
    res = mechsim.simulate(imported.model, None, until="600 s", times=mechsim.Quantity(t, "s"),
                           **TIGHT)
    np.testing.assert_allclose(imported.values(res, "half"),
                               imported.values(res, "total") / 2, rtol=1e-12)
