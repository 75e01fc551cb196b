"""MathML's function set in expressions (for SBML models), and values of undeclared unit."""

import math

import numpy as np
import pytest
import sympy

from mechsim.codegen import generate
from mechsim.errors import ParseError, UnitError
from mechsim.expr import Expr
from mechsim.units import is_undeclared, ureg

# (text, value at x = 0.3, y = -2.5), values from math by hand
CASES = [
    ("abs(y)", 2.5), ("floor(y)", -3.0), ("ceiling(y)", -2.0), ("factorial(3)", 6.0),
    ("sin(x)", math.sin(0.3)), ("cos(x)", math.cos(0.3)), ("tan(x)", math.tan(0.3)),
    ("sec(x)", 1 / math.cos(0.3)), ("csc(x)", 1 / math.sin(0.3)), ("cot(x)", 1 / math.tan(0.3)),
    ("sinh(x)", math.sinh(0.3)), ("cosh(x)", math.cosh(0.3)), ("tanh(x)", math.tanh(0.3)),
    ("sech(x)", 1 / math.cosh(0.3)), ("csch(x)", 1 / math.sinh(0.3)),
    ("coth(x)", 1 / math.tanh(0.3)), ("arcsin(x)", math.asin(0.3)),
    ("arccos(x)", math.acos(0.3)), ("arctan(x)", math.atan(0.3)),
    ("arcsec(-y)", math.acos(1 / 2.5)), ("arccsc(-y)", math.asin(1 / 2.5)),
    ("arccot(x)", math.atan(1 / 0.3)), ("arcsinh(x)", math.asinh(0.3)),
    ("arccosh(-y)", math.acosh(2.5)), ("arctanh(x)", math.atanh(0.3)),
    ("arcsech(x)", math.acosh(1 / 0.3)), ("arccsch(x)", math.asinh(1 / 0.3)),
    ("arccoth(-y)", math.atanh(1 / 2.5)), ("min(x, y, 1)", -2.5), ("max(x, y, 1)", 1.0),
    ("rem(y, 2)", -0.5), ("quotient(y, 2)", -1.0), ("rem(7, -2)", 1.0),
    ("quotient(7, -2)", -3.0),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_functions_evaluate_and_generate_code(text, expected):
    e = Expr(text)
    env = {"x": 0.3, "y": -2.5}
    assert e.evaluate(env) == pytest.approx(expected, rel=1e-12)
    x, y = sympy.Symbol("x", real=True), sympy.Symbol("y", real=True)
    form = e.sympy({"x": x, "y": y})
    for mode in ("scalar", "vector"):
        fn = generate("f", ("t", "y", "p"), {"y": [x, y], "p": []}, [((0,), form)], (1,),
                      mode)
        assert float(fn(0.0, np.array([0.3, -2.5]), np.array([]))[0]) == \
            pytest.approx(expected, rel=1e-12)


def test_derivatives_of_piecewise_constant_functions_are_zero():
    x = sympy.Symbol("x", real=True)
    for text in ("floor(x)", "ceiling(x)"):
        assert sympy.diff(Expr(text).sympy({"x": x}), x) == 0
    d = sympy.diff(Expr("max(x, 2)").sympy({"x": x}), x)  # Heaviside, which codegen prints
    fn = generate("f", ("t", "y", "p"), {"y": [x], "p": []}, [((0,), d)], (1,), "scalar")
    assert fn(0.0, np.array([3.0]), np.array([]))[0] == 1.0
    assert fn(0.0, np.array([1.0]), np.array([]))[0] == 0.0


def test_arity_and_dimensions():
    with pytest.raises(ParseError, match="takes 2 arguments"):
        Expr("rem(x)")
    with pytest.raises(ParseError, match="exactly one argument"):
        Expr("sin(x, y)")
    units = {"C": ureg.nM, "D": ureg.nM, "k": ureg("1/day")}
    assert Expr("abs(C)").dimension(units).units == ureg.nM
    assert Expr("max(C, D)").dimension(units).units == ureg.nM
    assert Expr("quotient(C, D)").dimension(units).dimensionless
    with pytest.raises(UnitError, match="share one dimension"):
        Expr("min(C, k)").dimension(units)
    with pytest.raises(UnitError, match="dimensionless argument"):
        Expr("floor(C)").dimension(units)  # depends on the unit C is written in


def test_undeclared_values_pass_every_check_and_never_cancel():
    units = {"k": ureg.undeclared, "C": ureg.nM, "j": ureg.undeclared}
    assert is_undeclared(Expr("k*C").dimension(units))
    assert is_undeclared(Expr("k/k").dimension(units))  # not dimensionless: k/j would not be
    assert is_undeclared(Expr("k + C").dimension(units))
    assert Expr("sin(k)").dimension(units).dimensionless
    Expr("k < C", condition=True).dimension(units)  # no error
    assert is_undeclared(Expr("piecewise(k, C > j, C)", condition=False).dimension(units))
    with pytest.raises(UnitError):  # a declared part is still checked
        Expr("C + 1 + k").dimension(units)


def test_compiled_engine_and_scipy_agree_on_mathml_functions():
    """A rate law with MathML functions runs on the compiled (numba) engine too."""
    pytest.importorskip("numba")
    import mechsim
    from mechsim.model import Model, Parameter, Reaction, Species

    rate = Expr("k*(2 + sin(t*w))*max(A, 0.1)*abs(cos(A)) + floor(t*w)*k*rem(t*w, 1)")
    model = Model("mathml", species=(Species("A", ureg.dimensionless, ureg.Quantity(1.0)),),
                  parameters=(Parameter("k", "0.3 1/day"), Parameter("w", "1 1/day")),
                  reactions=(Reaction("r", (), (("A", 1.0),), rate),))
    kw = dict(until="5 day", every="1 day", rtol=1e-10, atol=1e-12)
    a = mechsim.simulate(model, method="NDF", **kw)["A"].magnitude
    b = mechsim.simulate(model, method="LSODA", **kw)["A"].magnitude
    np.testing.assert_allclose(a, b, rtol=1e-6)
