"""The expression whitelist, dimension inference, and generated code vs a reference evaluator."""

import ast
import math

import mpmath
import numpy as np
import pytest
import sympy
from hypothesis import example, given
from hypothesis import strategies as st

from mechsim.codegen import generate
from mechsim.errors import ParseError, UnitError
from mechsim.expr import parse_expr
from mechsim.units import ureg


@pytest.mark.parametrize("text, message", [
    ("__import__('os').system('touch pwned')", "is not allowed"),
    ("open('x').read()", "is not allowed"),
    ("x.__class__", "Attribute is not allowed"),
    ("[c for c in ()]", "ListComp is not allowed"),
    ("lambda: 1", "syntax error|Lambda"),
    ("x if y else z", "IfExp is not allowed"),
    ("x ^ 2", "use \\*\\* for powers"),
    ("'text'", "cannot read 'text' as a quantity"),
    ("x < 1", "a condition .* is not a value"),
    ("exp(x, y)", "exactly one argument"),
    ("exp(x=1)", "exactly one argument"),
    ("k*lambda", "'lambda' is a Python keyword"),
    ("", "non-empty"),
    ("1e400", "finite"),
])
def test_forbidden_expressions_are_rejected(text, message):
    with pytest.raises(ParseError, match=message):
        parse_expr(text, where="model.toml:7")


def test_rejected_expression_runs_nothing(tmp_path):
    target = tmp_path / "pwned"
    with pytest.raises(ParseError):
        parse_expr(f"__import__('os').system('touch {target}')")
    assert not target.exists()


def test_error_carries_location():
    with pytest.raises(ParseError) as info:
        parse_expr("a.b", where="m.toml:12")
    assert str(info.value).startswith("m.toml:12: ")


U = {"C": ureg.nM, "R": ureg.nM, "kon": (1 / (ureg.nM * ureg.day)).units,
     "koff": (1 / ureg.day).units, "V": ureg.L, "n": ureg.dimensionless}


@pytest.mark.parametrize("text, expected", [
    ("kon*C*R - koff*C", "nM/day"),
    ("C/(C + R)", ""),
    ("V*C*koff", "nmol/day"),
    ("sqrt(C*R)", "nM"),
    ("C**2/R", "nM"),
    ("exp(-koff)", None),  # exp of 1/day
    ("C**n", None),
])
def test_dimension_inference(text, expected):
    expr = parse_expr(text)
    if expected is None:
        with pytest.raises(UnitError):
            expr.dimension(U)
    else:
        got = expr.dimension(U)
        assert got.dimensionality == ureg.Quantity(1, expected or "").dimensionality


def test_adding_unlike_dimensions_names_both():
    with pytest.raises(UnitError, match=r"cannot add .*substance.*'C'.*'koff'"):
        parse_expr("C + koff").dimension(U)


# ---- generated code equals a direct evaluation of the same tree --------------------------
NAMES = ["a", "b", "c"]


def trees(depth=3):
    leaf = st.one_of(st.sampled_from(NAMES),
                     st.floats(0.1, 10, allow_nan=False).map(lambda v: repr(round(v, 3))))
    return st.recursive(leaf, lambda inner: st.one_of(
        st.tuples(st.sampled_from(["+", "-", "*", "/"]), inner, inner).map(
            lambda t: f"({t[1]} {t[0]} {t[2]})"),
        st.tuples(inner, st.sampled_from(["2", "3", "0.5", "-1", "1.7"])).map(
            lambda t: f"({t[0]})**{t[1]}"),
        inner.map(lambda s: f"exp(-({s})**2)"),
        inner.map(lambda s: f"sqrt(({s})**2 + 1)"),
        inner.map(lambda s: f"log(({s})**2 + 1)"),
    ), max_leaves=8)


def reference(text, env):
    """Evaluate with sympy's own numeric evaluation (independent of our code generator)."""
    expr = parse_expr(text).sympy({n: sympy.Symbol(n, real=True) for n in NAMES})
    return float(expr.evalf(subs={sympy.Symbol(n, real=True): v for n, v in env.items()}))


def constant_parts(text):
    """Exact values (mpmath, 50 digits) of every part of ``text`` made only of numbers,
    computed from Python's own syntax tree, independently of mechsim's parser."""
    mpmath.mp.dps = 50
    functions = {"exp": mpmath.exp, "sqrt": mpmath.sqrt, "log": mpmath.log}
    operators = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
                 ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
                 ast.Pow: lambda a, b: a ** b}
    values = []

    def value(node):
        if isinstance(node, ast.Constant):
            v = mpmath.mpf(node.value)
        elif isinstance(node, ast.Name):
            v = None
        elif isinstance(node, ast.UnaryOp):
            v = value(node.operand)
            v = None if v is None else -v
        elif isinstance(node, ast.Call):
            v = value(node.args[0])
            v = None if v is None else functions[node.func.id](v)
        else:
            a, b = value(node.left), value(node.right)
            v = None if a is None or b is None else operators[type(node.op)](a, b)
        if v is not None:
            values.append(v)
        return v

    value(ast.parse(text, mode="eval").body)
    return values


@given(trees(), st.lists(st.floats(0.2, 5), min_size=3, max_size=3))
@example("exp(-(exp(-(sqrt(((3.0)**3)**2 + 1))**2))**2)", [1.0, 1.0, 1.0])  # underflows
@example("(a)**2 + exp(-(2.0)**2)", [1.0, 2.0, 3.0])
def test_generated_code_matches_sympy_evaluation(text, values):
    # The parser refuses a part made only of numbers that overflows or underflows double
    # precision (the solver could not use it): exactly when such a part exists.  The
    # band between the two thresholds leaves room for float rounding near the limits.
    exact = [abs(v) for v in constant_parts(text)]
    beyond = any(v > 1e310 or 0 < v < 1e-330 for v in exact)
    near = any(v > 1e300 or 0 < v < 1e-300 for v in exact)
    try:
        parsed = parse_expr(text)
    except ParseError as exc:
        assert "floating-point number" in str(exc) and near, (text, str(exc))
        return
    assert not beyond, text
    env = dict(zip(NAMES, values))
    syms = [sympy.Symbol(n, real=True) for n in NAMES]
    expr = parsed.sympy(dict(zip(NAMES, syms)))
    expected = reference(text, env)
    if not math.isfinite(expected) or abs(expected) > 1e12:
        return
    y = np.array(values)
    for mode in ("scalar", "vector"):
        fn = generate("f", ("t", "y", "p"), {"y": syms, "p": []}, [((0,), expr)], (1,), mode,
                      batch_from="y")
        got = fn(0.0, y, np.array([]))[0]
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)
    batch = np.stack([y, y * 1.0])  # shape (2, 3): transpose to states x batch
    fn = generate("f", ("t", "y", "p"), {"y": syms, "p": []}, [((0,), expr)], (1,), "vector",
                  batch_from="y")
    np.testing.assert_allclose(fn(0.0, batch.T, np.array([]))[0], [expected] * 2, rtol=1e-9,
                               atol=1e-12)


def test_generated_functions_see_no_builtins():
    x = sympy.Symbol("x", real=True)
    fn = generate("f", ("t", "y", "p"), {"y": [x], "p": []}, [((0,), x)], (1,), "scalar")
    assert fn.__globals__["__builtins__"] == {}
    mathml = {"_sin", "_cos", "_tan", "_sinh", "_cosh", "_tanh", "_asin", "_acos", "_atan",
              "_asinh", "_acosh", "_atanh", "_floor", "_ceil", "_factorial", "_step", "_min",
              "_max"}  # MathML's functions, for SBML models
    assert set(fn.__globals__) - {"__builtins__"} == {"_pow", "_log", "_sqrt", "_exp", "_abs",
                                                      "_sign", "_zeros"} | mathml


def test_squared_then_rooted_becomes_abs_and_still_compiles(write_model):
    import mechsim
    path = write_model("""
[parameters]
k = "1 1/day"
[species.x]
unit = "nmol"
initial = "-2 nmol"
[reactions.r]
equation = "-> x"
rate = "k*(x**2)**0.5"
""".replace('initial = "-2 nmol"', 'initial = 0'))
    res = mechsim.simulate(path, None, until="1 day")
    assert res["x"].magnitude[-1] == 0.0
    cm = mechsim.compile_model(mechsim.load_model(path))
    assert np.isfinite(cm.jacobian()(0.0, np.array([-2.0]), np.array([1.0]))).all()


# ---- conditions and piecewise ---------------------------------------------------------------
def test_piecewise_and_conditions_read_evaluate_and_carry_dimensions():
    from mechsim.expr import Expr
    from mechsim.units import ureg

    e = Expr('piecewise(k1*C, C > "5 nM" and t < "2 day", k2*C)')
    units = {"k1": ureg.Unit("1/day"), "k2": ureg.Unit("1/h"), "C": ureg.Unit("nM"),
             "t": ureg.Unit("day")}
    assert e.dimension(units).dimensionality == ureg.Quantity(1, "nM/day").dimensionality
    # quoted quantities are canonical numbers: 5 nM is 5, 2 day is 2
    assert e.evaluate({"k1": 1.0, "k2": 3.0, "C": 6.0, "t": 1.0}) == 6.0
    assert e.evaluate({"k1": 1.0, "k2": 3.0, "C": 4.0, "t": 1.0}) == 12.0
    assert e.evaluate({"k1": 1.0, "k2": 3.0, "C": 6.0, "t": 3.0}) == 18.0
    no_otherwise = Expr("piecewise(1, x > 0)")
    assert math.isnan(no_otherwise.evaluate({"x": -1.0}))
    trigger = Expr('not (C >= "10 mg/L") or t == "1 h"', condition=True)
    assert trigger.evaluate({"C": 0.011, "t": 0.0}) is False  # 11 mg/L, canonical g/L
    assert trigger.evaluate({"C": 0.009, "t": 0.0}) is True


@pytest.mark.parametrize("text, condition, message", [
    ("C < 5", False, "a condition .* is not a value"),
    ("C + 1", True, "is a value, where a condition .* is needed"),
    ("a < b < c", True, "compare two values at a time"),
    ('"10 mg" / x', True, "is a value, where a condition"),
    ('C < "ten mg"', True, "cannot read 'ten mg'"),
    ("piecewise(1)", False, "needs at least a value and a condition"),
    ("piecewise(1, 2, 3)", False, "is a value, where a condition"),
    ("x and 1", True, "is a value, where a condition"),
    ("True", False, "is not a value"),
    ("x < y if z else w", True, "is a value, where a condition"),
    ("piecewise(x if y else z, x > 1, 0)", False, "IfExp is not allowed"),
])
def test_conditions_refused_with_one_line(text, condition, message):
    from mechsim.expr import Expr

    with pytest.raises(ParseError, match=message):
        Expr(text, condition=condition)


def test_comparisons_and_piecewise_values_must_share_a_dimension():
    from mechsim.expr import Expr
    from mechsim.units import ureg

    units = {"C": ureg.Unit("nM"), "t": ureg.Unit("day"), "k": ureg.Unit("1/day")}
    with pytest.raises(UnitError, match="cannot compare .* with"):
        Expr("t < 100", condition=True).dimension(units)
    with pytest.raises(UnitError, match="cannot compare"):
        Expr('C < "10 mg"', condition=True).dimension(units)
    with pytest.raises(UnitError, match="share one dimension"):
        Expr('piecewise(C, t > "0 day", k)').dimension(units)


@pytest.mark.parametrize("mode", ["scalar", "vector", "numba"])
def test_generated_piecewise_skips_the_branch_not_taken(mode):
    """Scalar and compiled code evaluate only the branch taken (1/x at x = 0 would raise or
    give inf); vector code computes both and picks."""
    import numpy as np
    import sympy

    from mechsim.codegen import generate

    x, k = sympy.symbols("x k", real=True)
    outputs = [((0,), sympy.Piecewise((1 / x, x > 0), (k, True))),
               ((1,), sympy.Piecewise((1.0, sympy.And(x > 0, sympy.Not(x > 2))), (0.0, True)))]
    if mode == "numba":
        numba = pytest.importorskip("numba")
        from mechsim.solvers.ndf_kernel import _helpers

        fn = numba.njit(generate("f", ("y", "p"), {"y": (x,), "p": (k,)}, outputs, (2,),
                                 "numba", helpers=_helpers()))
        cases = [fn(np.array([v]), np.array([3.0])) for v in (0.0, 0.5, 3.0)]
    elif mode == "scalar":
        fn = generate("f", ("y", "p"), {"y": (x,), "p": (k,)}, outputs, (2,), "scalar")
        cases = [fn(np.array([v]), np.array([3.0])) for v in (0.0, 0.5, 3.0)]
    else:
        fn = generate("f", ("y", "p"), {"y": (x,), "p": (k,)}, outputs, (2,), "vector",
                      batch_from="y")
        with np.errstate(divide="ignore"):
            out = fn(np.array([[0.0, 0.5, 3.0]]), np.array([3.0]))
        cases = [out[:, i] for i in range(3)]
    assert [list(c) for c in cases] == [[3.0, 0.0], [2.0, 1.0], [1 / 3, 0.0]]
