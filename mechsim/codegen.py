"""Turn sympy expressions into fast Python functions, without ``exec`` or ``eval``.

The function is assembled as a Python AST node by node: states, parameters and common
subexpressions become local variables ``s0, p3, c12`` read from array arguments, numbers become
float constants and only a fixed table of helper functions is reachable (the function's globals
hold nothing else, not even builtins).  No identifier or text from a model file ends up in the
generated code, so a model file cannot inject anything.  ``compile()`` turns the tree into a
code object and :class:`types.FunctionType` makes it callable.

Three flavours are generated from the same expressions:

* ``scalar``: arguments are 1-D arrays, values are unpacked with ``tolist()`` and math uses
  :mod:`math` on Python floats (several times faster than numpy scalars in an ODE callback);
* ``vector``: arguments may carry trailing batch axes (e.g. states x patients); math uses numpy
  and every output broadcasts over the batch;
* ``numba``: like ``scalar`` but values are read by indexing, so that the compiled engine
  (:mod:`mechsim.solvers.ndf_kernel`) can compile the function with numba; the caller
  supplies numba versions of the helpers.  With ``into=True`` the function takes the result
  array as a last argument ``out`` and writes only the listed entries (the rest keep what
  the caller put there, zeros for a Jacobian's structural zeros): the integrator's step
  loop then allocates nothing.
"""

from __future__ import annotations

import ast
import math
import types
from collections.abc import Sequence

import numpy as np
import sympy

from .expr import Ceiling, Factorial, Floor

__all__ = ["SafePow", "compile_def", "function_def", "generate", "protect_powers"]


class SafePow(sympy.Function):
    """``x**e`` for a non-integer exponent, differentiated as ``e*x**(e-1)``.

    sympy writes d(x**e)/dx as ``e*x**e/x``, which is 0/0 at x = 0 (an unbound receptor,
    RO = 0, a Hill term before the first dose) although the derivative is 0 there for e > 1.
    """

    nargs = 2

    def fdiff(self, argindex=1):
        x, e = self.args
        if argindex == 1:
            return e * SafePow(x, e - 1)
        return SafePow(x, e) * sympy.log(x)


def protect_powers(expr: sympy.Expr) -> sympy.Expr:
    """Replace powers with non-integer, non-half exponents by :class:`SafePow`."""
    def needs(e):
        return e.is_Pow and not e.exp.is_Integer and e.exp not in (sympy.Rational(1, 2),
                                                                    sympy.Rational(-1, 2))
    return expr.replace(needs, lambda e: SafePow(e.base, e.exp))


def _safe_pow(x, e):
    # Only non-integer exponents get here.  A state a hair below zero is solver noise at the
    # level of atol (an unbound receptor after washout); x**1.5 of it would be NaN and stop
    # the run, so the base is taken as 0, which is where the exact solution is.
    if x < 0:
        x = 0.0
    try:
        return math.pow(x, e)
    except (ValueError, OverflowError):  # 0 to a negative power
        return math.inf


def _vector_pow(x, e):
    with np.errstate(divide="ignore"):
        return np.power(np.maximum(x, 0.0), e)


def _safe_log(x):
    return math.log(x) if x > 0 else (-math.inf if x == 0 else math.nan)


def _safe_sqrt(x):
    return math.sqrt(x) if x >= 0 else math.nan


def _safe_exp(x):
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


#: sympy functions of one argument -> the helper name the generated code calls (MathML's
#: functions, mechsim.expr.FUNCTIONS); each mode's table below maps the name to math,
#: numpy or numba versions
_FUNCTION_HELPERS = {
    sympy.sin: "_sin", sympy.cos: "_cos", sympy.tan: "_tan", sympy.sinh: "_sinh",
    sympy.cosh: "_cosh", sympy.tanh: "_tanh", sympy.asin: "_asin", sympy.acos: "_acos",
    sympy.atan: "_atan", sympy.asinh: "_asinh", sympy.acosh: "_acosh",
    sympy.atanh: "_atanh", Floor: "_floor", Ceiling: "_ceil", Factorial: "_factorial",
    sympy.Heaviside: "_step",
}


def _nan_on_error(fn):
    """math's function, NaN outside its domain (numpy's convention, and SBML's: undefined)
    instead of an exception in the middle of a solver step."""
    def safe(x):
        try:
            return fn(x)
        except (ValueError, OverflowError):
            return math.nan
    return safe


def _step(x):
    # d max(a, b)/da: 1 where a > b, 0 where a < b; at a tie either one-sided value is a
    # valid Jacobian entry, and 0.5 (sympy's) is the average
    return 1.0 if x > 0 else (0.0 if x < 0 else 0.5)


def _math_helpers() -> dict:
    out = {name: _nan_on_error(getattr(math, name[1:])) for name in
           ("_sin", "_cos", "_tan", "_sinh", "_cosh", "_tanh", "_asin", "_acos", "_atan",
            "_asinh", "_acosh", "_atanh")}
    out.update({"_floor": lambda x: float(math.floor(x)), "_ceil": lambda x: float(math.ceil(x)),
                "_factorial": _nan_on_error(lambda x: math.gamma(x + 1.0)), "_step": _step,
                "_min": min, "_max": max})
    return out


def _numpy_helpers() -> dict:
    names = {"_sin": np.sin, "_cos": np.cos, "_tan": np.tan, "_sinh": np.sinh,
             "_cosh": np.cosh, "_tanh": np.tanh, "_asin": np.arcsin, "_acos": np.arccos,
             "_atan": np.arctan, "_asinh": np.arcsinh, "_acosh": np.arccosh,
             "_atanh": np.arctanh, "_floor": np.floor, "_ceil": np.ceil,
             "_min": np.minimum, "_max": np.maximum,
             "_step": lambda x: np.heaviside(x, 0.5)}
    from scipy.special import gamma

    names["_factorial"] = lambda x: gamma(np.asarray(x) + 1.0)
    return names


_HELPERS = {
    "scalar": {"_pow": _safe_pow, "_log": _safe_log, "_sqrt": _safe_sqrt, "_exp": _safe_exp,
               "_abs": abs, "_sign": np.sign, "_zeros": np.zeros, **_math_helpers()},
    "vector": {"_pow": _vector_pow, "_log": np.log, "_sqrt": np.sqrt, "_exp": np.exp,
               "_abs": np.abs, "_sign": np.sign, "_zeros": np.zeros,
               "_shape": np.shape, "_where": np.where, "_and": np.logical_and,
               "_or": np.logical_or, "_not": np.logical_not, **_numpy_helpers()},
}


_RELATIONS = {"<": ast.Lt, "<=": ast.LtE, ">": ast.Gt, ">=": ast.GtE, "==": ast.Eq,
              "!=": ast.NotEq}


def _name(id_: str, store: bool = False) -> ast.Name:
    return ast.Name(id=id_, ctx=ast.Store() if store else ast.Load())


def _call(fn: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=_name(fn), args=list(args), keywords=[])


def _binop(a: ast.expr, op: ast.operator, b: ast.expr) -> ast.BinOp:
    return ast.BinOp(left=a, op=op, right=b)


class _Printer:
    """sympy expression -> ast expression, with symbols mapped to local names.

    ``lazy`` (scalar and numba code): a piecewise value is Python's ``a if c else b``, so the
    branch not taken is not evaluated (``piecewise(1/x, x > 0, 0)`` at x = 0); in vector code
    (numpy arrays) every branch is computed and ``np.where`` picks."""

    def __init__(self, names: dict[sympy.Symbol, str], lazy: bool = True):
        self.names = names
        self.lazy = lazy

    def _choose(self, condition: ast.expr, value: ast.expr, otherwise: ast.expr) -> ast.expr:
        if self.lazy:
            return ast.IfExp(test=condition, body=value, orelse=otherwise)
        return _call("_where", condition, value, otherwise)

    def _logic(self, op: str, values: list[ast.expr]) -> ast.expr:
        if self.lazy:
            if op == "not":
                return ast.UnaryOp(op=ast.Not(), operand=values[0])
            return ast.BoolOp(op=ast.And() if op == "and" else ast.Or(), values=values)
        if op == "not":
            return _call("_not", values[0])
        out = values[0]
        for v in values[1:]:
            out = _call("_and" if op == "and" else "_or", out, v)
        return out

    def __call__(self, e: sympy.Expr) -> ast.expr:
        if e.is_Symbol:
            return _name(self.names[e])
        if e.is_Number or e.is_NumberSymbol:
            value = float(e)
            if value < 0:
                return ast.UnaryOp(op=ast.USub(), operand=ast.Constant(-value))
            return ast.Constant(value)
        if e.is_Add:
            terms = [self(a) for a in e.args]
            out = terms[0]
            for t in terms[1:]:
                out = _binop(out, ast.Add(), t)
            return out
        if e.is_Mul:
            num, den = [], []
            for factor in e.args:
                base, exp_ = factor.as_base_exp()
                if exp_.is_Number and exp_ < 0:
                    den.append(base ** -exp_)
                else:
                    num.append(factor)
            out = self._product(num) if num else ast.Constant(1.0)
            if den:
                out = _binop(out, ast.Div(), self._product(den))
            return out
        if e.is_Pow:
            return self._pow(e.base, e.exp)
        if isinstance(e, sympy.exp):
            return _call("_exp", self(e.args[0]))
        if isinstance(e, sympy.log):
            return _call("_log", self(e.args[0]))
        if isinstance(e, SafePow):
            return _call("_pow", self(e.args[0]), self(e.args[1]))
        # sympy simplifies (x**2)**0.5 to Abs(x) and differentiates it to sign(x)
        if isinstance(e, sympy.Abs):
            return _call("_abs", self(e.args[0]))
        if isinstance(e, sympy.sign):
            return _call("_sign", self(e.args[0]))
        helper = _FUNCTION_HELPERS.get(type(e))
        if helper is not None and (len(e.args) == 1 or isinstance(e, sympy.Heaviside)):
            return _call(helper, self(e.args[0]))
        if isinstance(e, (sympy.Min, sympy.Max)):  # nested two-argument calls
            out = self(e.args[0])
            for a in e.args[1:]:
                out = _call("_min" if isinstance(e, sympy.Min) else "_max", out, self(a))
            return out
        if isinstance(e, sympy.Piecewise):
            # from the last piece: (v1 if c1 else (v2 if c2 else otherwise)); a piece whose
            # condition is True ends the chain, none gives NaN (SBML: undefined)
            out = None
            for value, condition in reversed(e.args):
                if condition == sympy.true:
                    out = self(value)
                else:
                    out = self._choose(self(condition), self(value),
                                       out if out is not None else ast.Constant(math.nan))
            return out
        if isinstance(e, sympy.core.relational.Relational):
            return ast.Compare(left=self(e.lhs), ops=[_RELATIONS[e.rel_op]()],
                               comparators=[self(e.rhs)])
        if isinstance(e, (sympy.And, sympy.Or)):
            return self._logic("and" if isinstance(e, sympy.And) else "or",
                               [self(a) for a in e.args])
        if isinstance(e, sympy.Not):
            return self._logic("not", [self(e.args[0])])
        if e in (sympy.true, sympy.false):
            return ast.Constant(bool(e))
        raise TypeError(f"cannot generate code for {type(e).__name__}: {e}")

    def _product(self, factors) -> ast.expr:
        out = self(factors[0])
        for f in factors[1:]:
            out = _binop(out, ast.Mult(), self(f))
        return out

    def _pow(self, base, exp_) -> ast.expr:
        if exp_.is_Integer and 1 <= abs(int(exp_)) <= 4:
            n = abs(int(exp_))
            b = self(base)
            out = b
            for _ in range(n - 1):
                out = _binop(out, ast.Mult(), self(base))
            return out if exp_ > 0 else _binop(ast.Constant(1.0), ast.Div(), out)
        if exp_ == sympy.Rational(1, 2):
            return _call("_sqrt", self(base))
        if exp_ == sympy.Rational(-1, 2):
            return _binop(ast.Constant(1.0), ast.Div(), _call("_sqrt", self(base)))
        return _call("_pow", self(base), self(exp_))


def generate(name: str, args: Sequence[str], unpack: dict[str, Sequence[sympy.Symbol]],
             outputs: Sequence[tuple[tuple[int, ...], sympy.Expr]], shape: tuple[int, ...],
             mode: str, batch_from: str | None = None,
             helpers: dict | None = None, into: bool = False) -> types.FunctionType:
    """Build ``name(*args)`` returning an array of ``shape`` filled at the given indices.

    Parameters
    ----------
    args
        Argument names, e.g. ``("t", "y", "p")``.  A symbol named like an argument (``t``)
        refers to that argument directly.
    unpack
        For array arguments, the symbols its rows hold, in order (``{"y": states}``).
    outputs
        ``(index, expression)`` pairs; indices not listed stay zero.
    shape
        Shape of the result without batch axes.
    mode
        ``"scalar"`` or ``"vector"`` (see the module docstring).
    batch_from
        In vector mode, the argument whose trailing axes give the batch shape.
    helpers
        The helper table for ``numba`` mode (``_pow``, ``_log``, ... compiled by numba).
    into
        ``numba`` mode only: write into a last argument ``out`` and return nothing.
    """
    fn = function_def(name, args, unpack, outputs, shape, mode, batch_from, into)
    return compile_def(fn, helpers if mode == "numba" else _HELPERS[mode])


def function_def(name: str, args: Sequence[str], unpack: dict[str, Sequence[sympy.Symbol]],
                 outputs: Sequence[tuple[tuple[int, ...], sympy.Expr]],
                 shape: tuple[int, ...], mode: str, batch_from: str | None = None,
                 into: bool = False) -> ast.FunctionDef:
    """The function :func:`generate` compiles, as an AST (the compiled engine also writes
    it out as source, :mod:`mechsim.solvers.model_cache`)."""
    if into and mode != "numba":
        raise ValueError("into=True is for numba mode")
    names: dict[sympy.Symbol, str] = {}
    body: list[ast.stmt] = []
    for arg, symbols in unpack.items():
        local = [f"{arg}_{i}" for i in range(len(symbols))]
        names.update(zip(symbols, local))
        if not symbols:
            continue
        if mode == "numba":  # numba cannot unpack an array of unknown length into a tuple
            body.extend(ast.Assign(targets=[_name(n, store=True)],
                                   value=ast.Subscript(value=_name(arg), slice=ast.Constant(i),
                                                       ctx=ast.Load()))
                        for i, n in enumerate(local))
            continue
        source = _call_method(arg, "tolist") if mode == "scalar" else _name(arg)
        target = ast.Tuple(elts=[_name(n, store=True) for n in local], ctx=ast.Store())
        body.append(ast.Assign(targets=[target], value=source))
    for arg in args:
        names.setdefault(sympy.Symbol(arg, real=True), arg)
        names.setdefault(sympy.Symbol(arg), arg)

    lazy = mode != "vector"
    exprs = [e for _, e in outputs]
    temps, reduced = sympy.cse(exprs, symbols=sympy.numbered_symbols("_cse"), order="none")
    for i, (sym, value) in enumerate(temps):
        local = f"c{i}"
        body.append(ast.Assign(targets=[_name(local, store=True)],
                               value=_Printer(names, lazy)(value)))
        names[sym] = local
    printer = _Printer(names, lazy)

    dims = ast.Tuple(elts=[ast.Constant(n) for n in shape], ctx=ast.Load())
    if mode == "vector" and batch_from is not None:
        batch = ast.Subscript(value=_call("_shape", _name(batch_from)),
                              slice=ast.Slice(lower=ast.Constant(1)), ctx=ast.Load())
        dims = _binop(dims, ast.Add(), batch)
    if not into:
        body.append(ast.Assign(targets=[_name("out", store=True)],
                               value=_call("_zeros", dims)))
    for (index, _), value in zip(outputs, reduced):
        target = ast.Subscript(value=_name("out"), ctx=ast.Store(),
                               slice=ast.Tuple(elts=[ast.Constant(i) for i in index],
                                               ctx=ast.Load()))
        body.append(ast.Assign(targets=[target], value=printer(value)))
    body.append(ast.Return(value=ast.Constant(None) if into else _name("out")))

    arguments = [*args, "out"] if into else list(args)
    fn = ast.FunctionDef(
        name=name,
        args=ast.arguments(posonlyargs=[], args=[ast.arg(arg=a) for a in arguments],
                           vararg=None,
                           kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[]),
        body=body, decorator_list=[], returns=None, type_params=[])
    return ast.fix_missing_locations(fn)


def compile_def(fn: ast.FunctionDef, helpers: dict) -> types.FunctionType:
    """A generated function definition made callable, with ``helpers`` as its only globals
    (not even builtins)."""
    module = ast.fix_missing_locations(ast.Module(body=[fn], type_ignores=[]))
    code = compile(module, filename=f"<mechsim generated {fn.name}>", mode="exec")
    fn_code = next(c for c in code.co_consts if isinstance(c, types.CodeType))
    return types.FunctionType(fn_code, {"__builtins__": {}, **helpers}, fn.name)


def _call_method(obj: str, method: str) -> ast.Call:
    return ast.Call(func=ast.Attribute(value=_name(obj), attr=method, ctx=ast.Load()),
                    args=[], keywords=[])
