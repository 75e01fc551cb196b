"""What read_sbml imports beyond declared-unit models: undeclared units, events, MathML,
compartments whose size changes, conversion factors, computed stoichiometry, initial
assignments at t = 0, models without state; each checked against a hand computation."""

import math
import warnings

import numpy as np
import pytest

import mechsim
from mechsim.errors import ParseError, UnitWarning
from mechsim.io.sbml_import import SBMLImport, import_sbml_text
from mechsim.units import ureg

libsbml = pytest.importorskip("libsbml")


def build(species=(), parameters=(), compartments=(("C", 1.0, True),), reactions=(),
          rules=(), events=(), initial=()) -> str:
    """An L3V2 model without units.  species: (id, compartment, initial amount, hOSU,
    extra attributes); parameters: (id, value, constant); reactions: (id, reactants,
    products, law); rules: (kind, variable, formula); events: (id, trigger, delay,
    [(variable, formula)], persistent, initial value); initial: (symbol, formula)."""
    doc = libsbml.SBMLDocument(3, 2)
    m = doc.createModel()
    m.setId("m")
    for cid, size, constant in compartments:
        c = m.createCompartment()
        c.setId(cid)
        c.setSize(size)
        c.setConstant(constant)
        c.setSpatialDimensions(3)
    for sid, cid, amount, hosu, extra in species:
        s = m.createSpecies()
        s.setId(sid)
        s.setCompartment(cid)
        s.setInitialAmount(amount)
        s.setHasOnlySubstanceUnits(hosu)
        s.setBoundaryCondition(False)
        s.setConstant(False)
        for key, value in extra.items():
            getattr(s, f"set{key}")(value)
    for pid, value, constant in parameters:
        p = m.createParameter()
        p.setId(pid)
        p.setValue(value)
        p.setConstant(constant)
    for rid, reactants, products, law in reactions:
        r = m.createReaction()
        r.setId(rid)
        r.setReversible(False)
        for side, refs in ((r.createReactant, reactants), (r.createProduct, products)):
            for sid, n, ref_id in refs:
                ref = side()
                ref.setSpecies(sid)
                ref.setStoichiometry(n)
                ref.setConstant(ref_id is None)
                if ref_id:
                    ref.setId(ref_id)
        r.createKineticLaw().setMath(libsbml.parseL3Formula(law))
    for kind, variable, formula in rules:
        if kind == "algebraic":  # 0 = formula; it has no variable
            m.createAlgebraicRule().setMath(libsbml.parseL3Formula(formula))
            continue
        rule = m.createRateRule() if kind == "rate" else m.createAssignmentRule()
        rule.setVariable(variable)
        rule.setMath(libsbml.parseL3Formula(formula))
    for symbol, formula in initial:
        ia = m.createInitialAssignment()
        ia.setSymbol(symbol)
        ia.setMath(libsbml.parseL3Formula(formula))
    for eid, trigger, delay, assignments, persistent, initial_value in events:
        e = m.createEvent()
        e.setId(eid)
        e.setUseValuesFromTriggerTime(True)
        t = e.createTrigger()
        t.setMath(libsbml.parseL3Formula(trigger))
        t.setPersistent(persistent)
        t.setInitialValue(initial_value)
        if delay:
            e.createDelay().setMath(libsbml.parseL3Formula(delay))
        for variable, formula in assignments:
            a = e.createEventAssignment()
            a.setVariable(variable)
            a.setMath(libsbml.parseL3Formula(formula))
    return libsbml.writeSBMLToString(doc)


def run(text: str, until: float, n: int = 11, **kw) -> tuple[SBMLImport, object, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnitWarning)
        imp = import_sbml_text(text, where="t.xml", **kw)
    times = np.linspace(0.0, until, n)
    res = mechsim.simulate(imp.model, until=ureg.Quantity(until, imp.model.time_unit),
                           times=ureg.Quantity(times, imp.model.time_unit), rtol=1e-11,
                           atol=1e-14, method="LSODA")
    return imp, res, times


def test_undeclared_units_are_used_as_written_with_one_warning():
    text = build(species=[("S", "C", 2.0, False, {})], parameters=[("k", 0.3, True)],
                 compartments=[("C", 0.5, True)], reactions=[("r", [("S", 1, None)], [],
                                                              "k*S*C")])
    with pytest.warns(UnitWarning) as got:
        imp = import_sbml_text(text, where="t.xml")
    assert len([w for w in got if w.category is UnitWarning]) == 1
    assert "parameter 'k'" in str(got[0].message)
    assert "parameter 'k'" in imp.undeclared
    _, res, times = run(text, 4.0)
    conc = 2.0 / 0.5 * np.exp(-0.3 * times)  # [S] = amount / volume, decaying at rate k
    np.testing.assert_allclose(imp.values(res, "S"), conc, rtol=1e-8)
    np.testing.assert_allclose(imp.values(res, "S", "amount"), conc * 0.5, rtol=1e-8)
    assert imp.symbols["k"].unit is None and imp.symbols["S"].concentration
    with pytest.raises(ParseError, match="t.xml: model timeUnits has no units|has no units"):
        import_sbml_text(text, where="t.xml", strict_units=True)


def test_events_assign_species_and_parameters_with_a_delay():
    text = build(species=[("S", "C", 1.0, True, {})], parameters=[("k", 1.0, False)],
                 reactions=[("r", [], [("S", 1, None)], "k")],
                 events=[("e", "time >= 2", "0.5", [("S", "0"), ("k", "3")], True, True)])
    imp, res, times = run(text, 5.0, 11)
    # S = 1 + t up to 2.5, then 0 and growing at 3 per unit time
    expected = np.where(times < 2.5, 1 + times, 3 * (times - 2.5))
    np.testing.assert_allclose(imp.values(res, "S"), expected, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(imp.values(res, "k"), np.where(times < 2.5, 1, 3))


def test_piecewise_relations_and_mathml_functions():
    text = build(parameters=[("p", 0, False), ("q", 0, False)],
                 rules=[("assignment", "p", "piecewise(1, time < 2 && !(time > 5), 3) + "
                                            "abs(-2) + max(1, 4, 2) + floor(2.5)"),
                        ("assignment", "q", "rem(7, 3) + quotient(7, 3) + cos(pi) + "
                                            "factorial(3) + sinh(0) + arctan(1)*4/pi")])
    imp, res, times = run(text, 4.0, 5)  # no state at all: rules of time only
    np.testing.assert_allclose(imp.values(res, "p"), np.where(times < 2, 1, 3) + 2 + 4 + 2)
    assert imp.values(res, "q") == pytest.approx(np.full(5, 1 + 2 - 1 + 6 + 0 + 1))


def test_a_model_without_state_runs_with_the_default_method_alone_and_in_batches():
    # the compiled engine needs a state; a model of rules of time only still runs
    text = build(parameters=[("p", 0, False), ("k", 2.0, True)],
                 rules=[("assignment", "p", "k*time")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnitWarning)
        imp = import_sbml_text(text, where="t.xml")
    res = mechsim.simulate(imp.model, until="2 day", every="1 day")
    np.testing.assert_allclose(imp.values(res, "p"), [0, 2, 4])
    batch = mechsim.simulate_many(imp.model, parameters={"k": ["1 undeclared",
                                                              "3 undeclared"]},
                                  until="2 day", every="1 day")
    np.testing.assert_allclose(batch["p"].magnitude, [[0, 1, 2], [0, 3, 6]])


def test_a_compartment_that_grows_keeps_amounts_and_dilutes_concentrations():
    text = build(species=[("S", "V", 6.0, False, {})], compartments=[("V", 2.0, False)],
                 rules=[("rate", "V", "1")])
    imp, res, times = run(text, 4.0, 5)
    np.testing.assert_allclose(imp.values(res, "V"), 2 + times)
    np.testing.assert_allclose(imp.values(res, "S"), 6.0 / (2 + times), rtol=1e-9)
    np.testing.assert_allclose(imp.values(res, "S", "amount"), 6.0, rtol=1e-9)


def test_conversion_factor_and_stoichiometry_from_an_initial_assignment():
    text = build(species=[("A", "C", 10.0, True, {}),
                          ("B", "C", 0.0, True, {"ConversionFactor": "cf"})],
                 parameters=[("k", 0.5, True), ("cf", 3.0, True), ("n", 0, True)],
                 reactions=[("r", [("A", 1, None)], [("B", 2, "sr")], "k*A")],
                 initial=[("sr", "n + 2")])
    imp, res, times = run(text, 2.0, 5)
    a = 10 * np.exp(-0.5 * times)
    # B gains cf * stoichiometry (n + 2 = 2) per unit of the flux: 6 * (10 - A)
    np.testing.assert_allclose(imp.values(res, "B"), 6 * (10 - a), rtol=1e-8)


def test_initial_assignment_from_a_species_is_computed_at_t0():
    text = build(species=[("S", "C", 4.0, True, {})], parameters=[("p", 0, True)],
                 reactions=[("r", [("S", 1, None)], [], "S")], initial=[("p", "2*S + 1")])
    imp, res, _ = run(text, 1.0, 3)
    np.testing.assert_allclose(imp.values(res, "p"), 9.0)
    assert imp.values(res, "S")[-1] == pytest.approx(4 * math.exp(-1), rel=1e-8)


def test_an_algebraic_rule_determines_the_value_nothing_else_does():
    """0 = S1 + S2 - k1 with S1 made by a reaction: S2 = k1 - S1, so dS1/dt = k2 (k1 - S1)
    and S1 = k1 - (k1 - S1(0)) exp(-k2 t) (amounts, C = 1)."""
    text = build(species=[("S1", "C", 0.5, False, {}), ("S2", "C", 0.9, False, {})],
                 parameters=[("k1", 2.0, True), ("k2", 0.7, True)],
                 reactions=[("r", [], [("S1", 1, None)], "C*k2*S2")],
                 rules=[("algebraic", None, "S1 + S2 - k1")])
    imp, res, times = run(text, 3.0)
    s1 = 2.0 - (2.0 - 0.5) * np.exp(-0.7 * times)  # S2's own 0.9 yields to the rule
    np.testing.assert_allclose(imp.values(res, "S1"), s1, rtol=1e-8)
    np.testing.assert_allclose(imp.values(res, "S2"), 2.0 - s1, rtol=1e-8)


def test_coupled_linear_algebraic_rules_are_solved_together():
    # 0 = a - 2 b + t,  0 = (a + b) / 3 - 4:  a = (24 - t) / 3 * ... solved by hand below
    text = build(parameters=[("a", 0, False), ("b", 0, False)],
                 rules=[("algebraic", None, "a - 2*b + time"),
                        ("algebraic", None, "(a + b)/3 - 4")])
    imp, res, times = run(text, 3.0, 4)
    b = (12 + times) / 3  # from a = 2b - t and a + b = 12
    np.testing.assert_allclose(imp.values(res, "b"), b, rtol=1e-12)
    np.testing.assert_allclose(imp.values(res, "a"), 2 * b - times, rtol=1e-12)


@pytest.mark.parametrize(("rules", "message"), [
    ([("algebraic", None, "p*p - 2")], "not linear in 'p'"),
    ([("algebraic", None, "k - 2")], "no value is left for it to determine"),
    ([("algebraic", None, "p - 1"), ("algebraic", None, "2*p - 2")],
     "no value is left for it to determine"),
    ([("algebraic", None, "p - p + 1")], "'p' cancels out"),
    ([("algebraic", None, "p + q - 1")], "it could determine 'q' or 'p'"),
])
def test_algebraic_rules_that_are_not_linear_or_overdetermine_are_refused(rules, message):
    text = build(parameters=[("p", 1.0, False), ("q", 0.5, False), ("k", 2.0, True)],
                 rules=rules)
    with pytest.raises(ParseError) as info:
        import_sbml_text(text, where="t.xml")
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith("t.xml: algebraicRule 0 = ")


def test_a_coefficient_that_is_zero_whatever_the_values_is_refused_by_the_model():
    # 0 = k*p - k*p + 1: p's coefficient k - k is not a number, so the import writes
    # p = -1/(k - k); the compiler sees the division by zero for every k
    text = build(parameters=[("p", 1.0, False), ("k", 2.0, True)],
                 rules=[("algebraic", None, "k*p - k*p + 1")])
    with pytest.raises(mechsim.errors.ValidationError, match="divides by zero whatever"):
        run(text, 1.0)


@pytest.mark.parametrize(("change", "message"), [
    ({"rules": [("assignment", "p", "delay(p, 1)")]}, "delay(...) is not supported"),
    ({"events": [("a", "time > 1", None, [("p", "1")], True, True),
                 ("b", "time > 1", None, [("p", "2")], True, True)]}, None),
])
def test_out_of_scope_is_one_line(change, message):
    text = build(parameters=[("p", 0, False)], **change)
    if message is None:  # two events without priority: a fixed order is fine
        run(text, 2.0)
        return
    with pytest.raises(ParseError) as info:
        import_sbml_text(text, where="t.xml")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_events_with_equal_priorities_are_refused():
    doc = libsbml.readSBMLFromString(build(
        parameters=[("p", 0, False)],
        events=[("a", "time > 1", None, [("p", "1")], False, True),
                ("b", "time > 1", None, [("p", "2")], False, True)]))
    for e in ("a", "b"):
        doc.getModel().getEvent(e).createPriority().setMath(libsbml.parseL3Formula("1"))
    with pytest.raises(ParseError, match="same priority"):
        import_sbml_text(libsbml.writeSBMLToString(doc), where="t.xml")


@pytest.mark.filterwarnings("always::mechsim.errors.UnitWarning")
def test_command_line_strict_units(tmp_path, capsys):
    from mechsim.cli import main

    path = tmp_path / "nounits.xml"
    path.write_text(build(species=[("S", "C", 2.0, True, {})], parameters=[("k", 0.3, True)],
                          reactions=[("r", [("S", 1, None)], [], "k*S")]))
    assert main(["show", str(path)]) == 0
    assert "units not declared" in capsys.readouterr().err
    assert main(["--strict-units", "show", str(path)]) == 2
    assert "has no units; with strict_units=True" in capsys.readouterr().err
