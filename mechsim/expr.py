"""Safe expressions: text from a file -> validated Python AST -> sympy, plus dimensions.

Rate laws and rules are read with :func:`ast.parse` and accepted only if every node is on a
short whitelist (numbers, names, ``+ - * / **``, unary minus and a few functions).  The sympy
form is built node by node from that tree; nothing from a file ever reaches ``eval``, ``exec``
or ``sympify``.

A number with a unit is written as a quoted quantity, read by the unit parser (never
evaluated) and used in canonical units: ``C + "8 mg/L"``.  Conditions (event triggers, the
branches of ``piecewise``) add comparisons of two values of one dimension (``< <= > >= ==
!=``, one comparison each: ``a < b < c`` is refused), ``and``, ``or``, ``not`` and
``True``/``False``: ``C_mass < "10 mg/L"``.
``piecewise(v1, c1, v2, c2, ..., otherwise)`` is ``v1`` where ``c1`` holds, else ``v2``
where ``c2`` holds, ..., else ``otherwise`` (SBML's piecewise; the values share one
dimension).
"""

from __future__ import annotations

import ast
import keyword
import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

import pint
import sympy

from .errors import MechsimError, ParseError, UnitError
from .units import dimension_text, is_undeclared, ureg

__all__ = ["FUNCTIONS", "N_ARY", "PIECEWISE", "TIME", "Expr", "Fold", "fold", "parse_expr"]

#: Name that always means simulation time inside an expression.
TIME = "t"

#: SBML's piecewise(value, condition, ..., otherwise): a function of its own (several
#: arguments, conditions among them), not an entry of FUNCTIONS.
PIECEWISE = "piecewise"

class Floor(sympy.Function):
    """floor(x), with derivative 0 (it is piecewise constant; sympy leaves the derivative
    of its own floor unevaluated, which no solver can use)."""

    nargs = 1
    _number = staticmethod(sympy.floor)

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return cls._number(x)
        return None

    def fdiff(self, argindex=1):
        return sympy.Integer(0)


class Ceiling(Floor):
    """ceiling(x), derivative 0 (see :class:`Floor`)."""

    _number = staticmethod(sympy.ceiling)


class Factorial(Floor):
    """factorial(x) = gamma(x + 1); SBML applies it to whole numbers, where it is
    piecewise constant, so its derivative is taken as 0."""

    _number = staticmethod(lambda x: sympy.gamma(x + 1))


#: Whitelisted functions of one argument: name -> sympy constructor.  Each needs a
#: dimensionless argument, except those of _SAME_DIMENSION (and sqrt).  Beyond exp, log and
#: sqrt they are MathML's (SBML's) set, under SBML's names: the reciprocal trigonometric
#: functions and their inverses are written with the six basic ones, which the code
#: generator prints.
FUNCTIONS = {
    "exp": sympy.exp,
    "log": sympy.log,
    "ln": sympy.log,
    "log10": lambda x: sympy.log(x, 10),
    "sqrt": sympy.sqrt,
    "abs": sympy.Abs,
    "floor": Floor,
    "ceiling": Ceiling,
    "factorial": Factorial,
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan,
    "sec": lambda x: 1 / sympy.cos(x), "csc": lambda x: 1 / sympy.sin(x),
    "cot": lambda x: 1 / sympy.tan(x),
    "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh,
    "sech": lambda x: 1 / sympy.cosh(x), "csch": lambda x: 1 / sympy.sinh(x),
    "coth": lambda x: 1 / sympy.tanh(x),
    "arcsin": sympy.asin, "arccos": sympy.acos, "arctan": sympy.atan,
    "arcsec": lambda x: sympy.acos(1 / x), "arccsc": lambda x: sympy.asin(1 / x),
    "arccot": lambda x: sympy.atan(1 / x),
    "arcsinh": sympy.asinh, "arccosh": sympy.acosh, "arctanh": sympy.atanh,
    "arcsech": lambda x: sympy.acosh(1 / x), "arccsch": lambda x: sympy.asinh(1 / x),
    "arccoth": lambda x: sympy.atanh(1 / x),
}
_SQRT_OK_WITH_UNITS = {"sqrt"}
#: abs keeps its argument's dimension (|x| does not depend on the unit x is measured in);
#: floor and ceiling do depend on it, so they take dimensionless arguments only
_SAME_DIMENSION = {"abs"}

#: Functions of several arguments: name -> (fewest, most arguments; None: any number).
#: min and max of values of one dimension; rem(a, b) (a - b*quotient(a, b), the sign of a)
#: and quotient(a, b) (a/b truncated towards zero) of two values of one dimension.
N_ARY = {"min": (1, None), "max": (1, None), "rem": (2, 2), "quotient": (2, 2)}


def _truncate(x):
    """x rounded towards zero (sympy has no such function)."""
    return sympy.sign(x) * Floor(sympy.Abs(x))


def _n_ary_sympy(function: str, args: list):
    if function in ("min", "max"):
        return (sympy.Min if function == "min" else sympy.Max)(*args)
    a, b = args
    if function == "quotient":
        return _truncate(a / b)
    return a - b * _truncate(a / b)  # rem

_BINOPS = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**",
}

# Limits that keep hostile text from hanging or exhausting the parser (a rate law of the
# shipped models is under 200 characters and 12 levels deep).
MAX_CHARS = 10_000
MAX_DEPTH = 200
#: Largest |exponent| written as a number: 10**10**10 would make sympy build a ten-billion
#: digit integer.  Hill coefficients and allometric exponents are far below this.
MAX_EXPONENT = 1000
#: Largest integer power of a sum: compiling expands it (a 4-term sum to the 8th power has
#: 165 terms, to the 40th 12,341).
MAX_SUM_POWER = 8


def _fail(msg: str, text: str, where: str | None) -> ParseError:
    shown = text if len(text) <= 80 else f"{text[:60]}...({len(text)} characters)"
    return ParseError(f"expression {shown!r}: {msg}", where)


def _depth(tree: ast.AST) -> int:
    """Nesting depth of ``tree``, without recursion (the tree may be very deep)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in ast.iter_child_nodes(node))
    return deepest


_OPERATORS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}


class Fold:
    """Bottom-up evaluation of a validated expression tree: :func:`fold` calls one method
    per node, with the values of its children already computed.  Subclasses say what the
    tree becomes (a sympy expression, a number, a unit, SBML text); ``node`` is passed for
    messages that quote the source."""

    def number(self, value: float | int, node: ast.Constant):
        raise NotImplementedError

    def name(self, name: str, node: ast.Name):
        raise NotImplementedError

    def negate(self, value, node: ast.UnaryOp):
        raise NotImplementedError

    def binary(self, op: str, left, right, node: ast.BinOp):
        """``op`` is one of ``+ - * / **``."""
        raise NotImplementedError

    def call(self, function: str, argument, node: ast.Call):
        """``function`` is a name of :data:`FUNCTIONS`."""
        raise NotImplementedError

    def calls(self, function: str, arguments: list, node: ast.Call):
        """``function`` is a name of :data:`N_ARY`."""
        raise NotImplementedError

    # conditions (see the module docstring); a folder that meets none may leave these
    def quantity(self, value: pint.Quantity, node: ast.Constant):
        """A quoted quantity, ``"10 mg/L"``, already read by the unit parser."""
        raise NotImplementedError

    def truth(self, value: bool, node: ast.Constant):
        raise NotImplementedError

    def compare(self, op: str, left, right, node: ast.Compare):
        """``op`` is one of ``< <= > >= == !=``."""
        raise NotImplementedError

    def logical(self, op: str, values: list, node: ast.BoolOp):
        """``op`` is ``and`` or ``or``."""
        raise NotImplementedError

    def negation(self, value, node: ast.UnaryOp):
        """``not value``."""
        raise NotImplementedError

    def piecewise(self, pieces: list, otherwise, node: ast.Call):
        """``pieces`` is [(value, condition), ...]."""
        raise NotImplementedError


#: a number followed by a unit word, outside quotes: the usual cause of a syntax error
_NUMBER_WITH_UNIT = re.compile(r"(?<![\w.\"'])\d+(?:\.\d*)?(?:[eE][+-]?\d+)?\s+[A-Za-zµ]")

_COMPARISONS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==",
                ast.NotEq: "!="}


def fold(node: ast.AST, folder: Fold):
    """``folder``'s value of a validated tree (see :class:`Fold`)."""
    if isinstance(node, ast.Expression):
        return fold(node.body, folder)
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        return folder.truth(node.value, node)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return folder.quantity(_quoted_quantity(node), node)
    if isinstance(node, ast.Compare):
        return folder.compare(_COMPARISONS[type(node.ops[0])], fold(node.left, folder),
                              fold(node.comparators[0], folder), node)
    if isinstance(node, ast.BoolOp):
        return folder.logical("and" if isinstance(node.op, ast.And) else "or",
                              [fold(v, folder) for v in node.values], node)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return folder.negation(fold(node.operand, folder), node)
    if isinstance(node, ast.Call) and node.func.id == PIECEWISE:
        args = [fold(a, folder) for a in node.args]
        otherwise = args.pop() if len(args) % 2 else None
        return folder.piecewise(list(zip(args[0::2], args[1::2])), otherwise, node)
    if isinstance(node, ast.Constant):
        return folder.number(node.value, node)
    if isinstance(node, ast.Name):
        return folder.name(node.id, node)
    if isinstance(node, ast.UnaryOp):
        value = fold(node.operand, folder)
        return folder.negate(value, node) if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        return folder.binary(_OPERATORS[type(node.op)], fold(node.left, folder),
                             fold(node.right, folder), node)
    if isinstance(node, ast.Call) and node.func.id in N_ARY:
        return folder.calls(node.func.id, [fold(a, folder) for a in node.args], node)
    if isinstance(node, ast.Call):
        return folder.call(node.func.id, fold(node.args[0], folder), node)
    raise AssertionError(f"unvalidated node {node!r}")  # _validate ran first


class _Constant(Fold):
    """The value of a subtree without names, in floats; None if it has names.

    Raises :class:`_OutOfRange` when any intermediate value leaves the float range (sympy
    would compute it exactly, with as many digits as it takes, and the solver, which works in
    floats, could not use it), ZeroDivisionError, or ValueError for a non-real result.
    """

    def number(self, value, node):
        return float(value)

    def name(self, name, node):
        return None

    def negate(self, value, node):
        return None if value is None else -value

    def quantity(self, value, node):
        return None  # a threshold, checked by the unit parser

    def truth(self, value, node):
        return None

    def compare(self, op, a, b, node):
        return None

    def logical(self, op, values, node):
        return None

    def negation(self, value, node):
        return None

    def piecewise(self, pieces, otherwise, node):
        return None

    def call(self, function, v, node):
        if v is None:
            return None
        if function == "exp":
            return _in_range(math.exp(v), (v,))
        return _in_range(float(_Float._FUNCTIONS[function](v)), ())

    def calls(self, function, values, node):
        if any(v is None for v in values):
            return None
        return _float_n_ary(function, values)

    def binary(self, op, a, b, node):
        if a is None or b is None:
            return None
        if op == "+":
            return _in_range(a + b, ())
        if op == "-":
            return _in_range(a - b, ())
        if op == "*":
            return _in_range(a * b, (a, b))
        if op == "/":
            return _in_range(a / b, (a,))
        # ValueError for a negative base and a fractional exponent
        return _in_range(math.pow(a, b), (a,))


def _constant(node: ast.AST) -> float | None:
    return fold(node, _Constant())


_TOO_LARGE = "is larger than the largest floating-point number (about 1.8e308)"


def _short(node: ast.AST) -> str:
    """A subexpression for a message, shortened."""
    text = ast.unparse(node)
    return repr(text if len(text) <= 40 else f"{text[:37]}...")


class _OutOfRange(ArithmeticError):
    """A part made only of numbers overflows or underflows double precision."""


def _in_range(value: float, nonzero_inputs: tuple[float, ...]) -> float:
    """``value``, unless it overflowed to infinity or underflowed to zero from non-zero
    inputs: the exact value exists (sympy would carry it with hundreds of thousands of
    digits), but in the solver's floats it is infinite or a zero the text did not write."""
    if not math.isfinite(value):
        raise _OutOfRange(_TOO_LARGE)
    if value == 0 and nonzero_inputs and all(x != 0 for x in nonzero_inputs):
        raise _OutOfRange("is smaller than the smallest floating-point number (about "
                          "5e-324) and would be taken as 0; write 0 or rescale the "
                          "parameters")
    return value


def _check_powers(node: ast.AST, text: str, where: str | None, total: float = 1.0,
                  power: float = 1.0) -> None:
    """Limit exponents by their product along nested powers: ((2*x)**1000)**1000 makes sympy
    pull out 2**1000000, and an integer power of a sum is expanded term by term when the
    model is compiled ((a+b+c+d)**40 already has 12,341 terms).

    ``total`` is the product of the sizes of the exponents above ``node``, ``power`` the
    power that ``node`` ends up raised to (sympy merges nested powers and sqrt:
    sqrt(a + b)**6 is (a + b)**3).  Any other function ends the chain: log(a + b)**9 does
    not expand a + b.
    """
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        try:
            exponent = _constant(node.right)
        except (ArithmeticError, ValueError):
            exponent = math.inf
        if exponent is not None:
            size = abs(exponent) or 1.0  # x**0 still evaluates its base first
            total *= size
            power *= size
            if not total <= MAX_EXPONENT:
                raise _fail(f"exponent {ast.unparse(node.right)!r} is too large (at most "
                            f"{MAX_EXPONENT} in size, multiplied along nested powers)",
                            text, where)
        _check_powers(node.left, text, where, total, power)
        _check_powers(node.right, text, where)
        return
    if isinstance(node, ast.Call):
        if node.func.id == "sqrt":
            _check_powers(node.args[0], text, where, total / 2, power / 2)
        else:
            for arg in node.args:
                _check_powers(arg, text, where)
        return
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)) \
            and float(power).is_integer() and power > MAX_SUM_POWER:
        raise _fail(f"a sum raised to the power {power:g} (at most "
                    f"{MAX_SUM_POWER}: it is expanded term by term); write the power with "
                    "a parameter or simplify", text, where)
    for child in ast.iter_child_nodes(node):
        _check_powers(child, text, where, total, power)


def _check_constants(node: ast.AST, text: str, where: str | None) -> None:
    """Numbers written in the text stay finite and real; exponents stay moderate."""
    _check_powers(node, text, where)
    # children before their parents, so the error names the smallest part out of range
    for sub in reversed(list(ast.walk(node))):
        if isinstance(sub, ast.expr):
            try:
                value = _constant(sub)
            except ZeroDivisionError:
                raise _fail("division by zero", text, where) from None
            except _OutOfRange as exc:
                raise _fail(f"a part made only of numbers, {_short(sub)}, {exc}", text,
                            where) from None
            except OverflowError:  # raised by math.exp and math.pow themselves
                raise _fail(f"a part made only of numbers, {_short(sub)}, {_TOO_LARGE}",
                            text, where) from None
            except ValueError:  # sqrt or log of a negative number, (-8)**0.5
                raise _fail(f"a part made only of numbers, {_short(sub)}, has no real "
                            "value", text, where) from None
            if value is not None and not math.isfinite(value):
                raise _fail("the value is not a finite number", text, where)


def _validate(node: ast.AST, text: str, where: str | None, condition: bool = False) -> None:
    """Raise ParseError unless every node of ``node`` is whitelisted; ``condition`` says
    whether ``node`` must be a condition (true or false) rather than a value."""
    if isinstance(node, ast.Expression):
        _validate(node.body, text, where, condition)
    elif _is_condition(node):
        if not condition:
            raise _fail("a condition (a comparison, and/or/not, True/False) is not a value; "
                        "conditions go in piecewise(value, condition, ..., otherwise) or an "
                        "event's trigger", text, where)
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1:
                raise _fail("compare two values at a time (write a < b and b < c, not "
                            "a < b < c)", text, where)
            for side in (node.left, node.comparators[0]):
                _validate(side, text, where)
        elif isinstance(node, ast.BoolOp):
            for value in node.values:
                _validate(value, text, where, condition=True)
        elif isinstance(node, ast.UnaryOp):
            _validate(node.operand, text, where, condition=True)
    elif condition:
        raise _fail(f"{_short(node)} is a value, where a condition (a comparison such as "
                    "C < K, and/or/not, True/False) is needed", text, where)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, str):  # a quantity with its unit: C + "8 mg/L"
            _quoted_quantity(node, text, where)
            return
        if not isinstance(node.value, (int, float)):
            raise _fail(f"only numbers are allowed as literals, got {node.value!r}", text, where)
        try:
            finite = math.isfinite(node.value)
        except OverflowError:  # an integer literal beyond the float range
            finite = False
        if not finite:
            raise _fail("numbers must be finite", text, where)
    elif isinstance(node, ast.Name):
        if node.id in ("True", "False"):  # not reached: parsed as constants
            raise _fail(f"{node.id} is a condition, not a value", text, where)
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINOPS:
            hint = " (use ** for powers)" if isinstance(node.op, ast.BitXor) else ""
            raise _fail(f"operator {type(node.op).__name__} is not allowed{hint}", text, where)
        _validate(node.left, text, where)
        _validate(node.right, text, where)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.USub, ast.UAdd)):
            raise _fail(f"operator {type(node.op).__name__} is not allowed", text, where)
        _validate(node.operand, text, where)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
            node.func.id == PIECEWISE:
        if node.keywords or len(node.args) < 2:
            raise _fail("piecewise(value, condition, ..., otherwise) needs at least a value "
                        "and a condition", text, where)
        for k, arg in enumerate(node.args):
            last_alone = k == len(node.args) - 1 and len(node.args) % 2
            _validate(arg, text, where, condition=bool(k % 2) and not last_alone)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
            node.func.id in N_ARY:
        fewest, most = N_ARY[node.func.id]
        if node.keywords or len(node.args) < fewest or \
                (most is not None and len(node.args) > most):
            count = f"{fewest}" if fewest == most else f"at least {fewest}"
            raise _fail(f"{node.func.id}() takes {count} argument{'s' * (count != '1')}",
                        text, where)
        for arg in node.args:
            _validate(arg, text, where)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise _fail(f"function {name!r} is not allowed (allowed: "
                        f"{', '.join(sorted([*FUNCTIONS, *N_ARY, PIECEWISE]))})", text, where)
        if node.keywords or len(node.args) != 1:
            raise _fail(f"{node.func.id}() takes exactly one argument", text, where)
        _validate(node.args[0], text, where)
    else:
        raise _fail(f"{type(node).__name__} is not allowed (only numbers, names, "
                    "+ - * / ** and exp/log/sqrt; comparisons, and/or/not in conditions)",
                    text, where)


def _is_condition(node: ast.AST) -> bool:
    """Whether a node is true or false rather than a number."""
    return isinstance(node, (ast.Compare, ast.BoolOp)) or \
        (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)) or \
        (isinstance(node, ast.Constant) and isinstance(node.value, bool))


def _quoted_quantity(node: ast.Constant, text: str | None = None,
                     where: str | None = None) -> pint.Quantity:
    """A quoted threshold, ``"10 mg/L"``, read by the unit parser (never evaluated)."""
    from .units import parse_quantity

    try:
        q = parse_quantity(node.value, what="a quoted quantity")
    except MechsimError as exc:  # say which expression it was written in
        raise _fail(exc.message, text or node.value, where) from None
    if not math.isfinite(float(q.magnitude)):
        raise _fail(f"the quantity {node.value!r} is not finite", text or node.value, where)
    return q


def _names(tree: ast.AST) -> frozenset[str]:
    return frozenset(n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
                     and not _is_function_name(tree, n))


def _is_function_name(tree: ast.AST, name: ast.Name) -> bool:
    return any(isinstance(c, ast.Call) and c.func is name for c in ast.walk(tree))


class _Sympy(Fold):
    def __init__(self, symbols: Mapping[str, sympy.Symbol]):
        self.symbols = symbols

    def number(self, value, node):
        return sympy.Integer(value) if isinstance(value, int) else sympy.Float(value)

    def name(self, name, node):
        return self.symbols[name]

    def negate(self, value, node):
        return -value

    def binary(self, op, a, b, node):
        return _arithmetic(op, a, b)

    def call(self, function, argument, node):
        return FUNCTIONS[function](argument)

    def calls(self, function, arguments, node):
        return _n_ary_sympy(function, arguments)

    def quantity(self, value, node):
        return sympy.Float(_canonical(value))

    def truth(self, value, node):
        return sympy.true if value else sympy.false

    def compare(self, op, a, b, node):
        if a.is_number and b.is_number:  # decided now: sympy's logic fails on 1 < 2 kept
            return sympy.true if _Float({}).compare(op, float(a), float(b), node) \
                else sympy.false  # unevaluated inside an And
        return _RELATIONS[op](a, b, evaluate=False)

    def logical(self, op, values, node):
        return (sympy.And if op == "and" else sympy.Or)(*values)

    def negation(self, value, node):
        return sympy.Not(value)

    def piecewise(self, pieces, otherwise, node):
        rest = sympy.nan if otherwise is None else otherwise
        return sympy.Piecewise(*pieces, (rest, True))


_RELATIONS = {"<": sympy.StrictLessThan, "<=": sympy.LessThan, ">": sympy.StrictGreaterThan,
              ">=": sympy.GreaterThan, "==": sympy.Eq, "!=": sympy.Ne}


def _canonical(q: pint.Quantity) -> float:
    from .units import to_canonical

    return to_canonical(q)


def _arithmetic(op: str, a, b):
    """``a op b`` for numbers or sympy expressions alike."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a / b
    return a ** b


def _float_n_ary(function: str, values: list) -> float:
    if function == "min":
        return min(values)
    if function == "max":
        return max(values)
    a, b = values
    q = math.trunc(a / b)  # ZeroDivisionError for b = 0, as for a/b
    return float(q) if function == "quotient" else a - b * q


class _Float(Fold):
    """The value in floats, given a value for every name."""

    _FUNCTIONS: ClassVar = {
        "exp": math.exp, "log": math.log, "ln": math.log, "log10": math.log10,
        "sqrt": math.sqrt, "abs": abs, "floor": lambda x: float(math.floor(x)),
        "ceiling": lambda x: float(math.ceil(x)), "factorial": lambda x: math.gamma(x + 1),
        "sin": math.sin, "cos": math.cos, "tan": math.tan,
        "sec": lambda x: 1 / math.cos(x), "csc": lambda x: 1 / math.sin(x),
        "cot": lambda x: 1 / math.tan(x), "sinh": math.sinh, "cosh": math.cosh,
        "tanh": math.tanh, "sech": lambda x: 1 / math.cosh(x),
        "csch": lambda x: 1 / math.sinh(x), "coth": lambda x: 1 / math.tanh(x),
        "arcsin": math.asin, "arccos": math.acos, "arctan": math.atan,
        "arcsec": lambda x: math.acos(1 / x), "arccsc": lambda x: math.asin(1 / x),
        "arccot": lambda x: math.atan(1 / x), "arcsinh": math.asinh, "arccosh": math.acosh,
        "arctanh": math.atanh, "arcsech": lambda x: math.acosh(1 / x),
        "arccsch": lambda x: math.asinh(1 / x), "arccoth": lambda x: math.atanh(1 / x),
    }

    def __init__(self, env: Mapping[str, float]):
        self.env = env

    def number(self, value, node):
        return float(value)

    def name(self, name, node):
        return self.env[name]

    def negate(self, value, node):
        return -value

    def binary(self, op, a, b, node):
        return _arithmetic(op, a, b)

    def call(self, function, argument, node):
        return self._FUNCTIONS[function](argument)

    def calls(self, function, arguments, node):
        return _float_n_ary(function, arguments)

    def quantity(self, value, node):
        return _canonical(value)

    def truth(self, value, node):
        return value

    def compare(self, op, a, b, node):
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b,
                "!=": a != b}[op]

    def logical(self, op, values, node):
        return all(values) if op == "and" else any(values)

    def negation(self, value, node):
        return not value

    def piecewise(self, pieces, otherwise, node):
        for value, holds in pieces:
            if holds:
                return value
        return math.nan if otherwise is None else otherwise


@dataclass(frozen=True)
class Expr:
    """A validated expression read from text.

    Attributes
    ----------
    text
        The source text, as written.
    where
        ``"file:line"`` (or a name) for error messages.
    """

    text: str
    where: str | None = field(default=None, compare=False)
    #: True for a condition (an event's trigger): a comparison, and/or/not, True/False
    condition: bool = False

    def __post_init__(self):
        self.tree  # noqa: B018  (parse and validate now: errors surface at load time)

    @cached_property
    def tree(self) -> ast.Expression:
        text = self.text
        if not isinstance(text, str) or not text.strip():
            raise ParseError(f"expression must be non-empty text, got {text!r}", self.where)
        if len(text) > MAX_CHARS:
            raise ParseError(f"expression of {len(text)} characters is too long (at most "
                             f"{MAX_CHARS}): {text[:40]!r}...", self.where)
        if "\x00" in text:
            raise _fail("contains a NUL character", text, self.where)
        try:
            with warnings.catch_warnings():  # e.g. "invalid escape sequence" in a string
                warnings.simplefilter("ignore")
                tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            kw = [w for w in re.findall(r"[A-Za-z_]\w*", text) if keyword.iskeyword(w)]
            hint = f" ({kw[0]!r} is a Python keyword and cannot be a name)" if kw else ""
            msg = exc.msg
            if "integer string conversion" in msg:  # Python's guard against huge literals
                msg = "a number has thousands of digits"
            if not hint and _NUMBER_WITH_UNIT.search(text):
                hint = (" (a number with a unit goes in quotes, '\"8 mg/L\"', or in a "
                        "parameter)")
            raise _fail(f"syntax error: {msg}{hint}", text, self.where) from None
        except (RecursionError, MemoryError):
            raise _fail(f"nested too deeply (at most {MAX_DEPTH} levels)", text,
                        self.where) from None
        if _depth(tree) > MAX_DEPTH:
            raise _fail(f"nested too deeply (at most {MAX_DEPTH} levels)", text, self.where)
        _validate(tree, text, self.where, self.condition)
        _check_constants(tree.body, text, self.where)
        return tree

    @cached_property
    def names(self) -> frozenset[str]:
        """Every name the expression uses (functions excluded)."""
        return _names(self.tree)

    def sympy(self, symbols: Mapping[str, sympy.Symbol] | None = None) -> sympy.Expr:
        """The sympy form; ``symbols`` maps names to symbols (default: plain real symbols)."""
        symbols = symbols or {n: sympy.Symbol(n, real=True) for n in self.names}
        return fold(self.tree, _Sympy(symbols))

    def evaluate(self, env: Mapping[str, float]) -> float:
        """The value in floats, with ``env`` giving a number for every name (canonical
        magnitudes give the canonical magnitude of the result)."""
        return fold(self.tree, _Float(env))

    def fold(self, folder: Fold):
        """``folder``'s value of the expression (see :class:`Fold`)."""
        return fold(self.tree, folder)

    def constant_value(self) -> float | None:
        """The value if the expression has no names, else None."""
        if self.names:
            return None
        return float(self.sympy({}))

    def dimension(self, units: Mapping[str, pint.Unit]) -> pint.Quantity:
        """Unit of the result (a Quantity of magnitude 1), given the unit of every name.

        Raises :class:`UnitError` for adding unlike dimensions, a dimensional function
        argument or a non-constant exponent of a dimensional base.
        """
        return fold(self.tree.body, _Dimension(self, units))

    def __str__(self) -> str:
        return self.text


#: The "dimension" of a condition: true or false, no unit
TRUTH = ureg.Quantity(1.0)
#: The dimension of anything computed from a value of undeclared unit: dimension checks
#: accept it anywhere (see mechsim.units.is_undeclared)
UNDECLARED = ureg.Quantity(1.0, "undeclared")


class _Dimension(Fold):
    """The unit of the result (a Quantity of magnitude 1), given the unit of every name."""

    def __init__(self, expr: Expr, units: Mapping[str, pint.Unit]):
        self.expr, self.units = expr, units

    def error(self, msg: str) -> UnitError:
        return UnitError(f"expression {self.expr.text!r}: {msg}", self.expr.where)

    def number(self, value, node):
        return ureg.Quantity(1.0)

    def name(self, name, node):
        return ureg.Quantity(1.0, self.units[name])

    def quantity(self, value, node):
        return ureg.Quantity(1.0, value.units)

    def truth(self, value, node):
        return TRUTH

    def compare(self, op, a, b, node):
        if a.dimensionality != b.dimensionality and not _wild(a, b):
            raise self.error(f"cannot compare {dimension_text(a.dimensionality)} "
                             f"({ast.unparse(node.left)!r}) with "
                             f"{dimension_text(b.dimensionality)} "
                             f"({ast.unparse(node.comparators[0])!r})")
        return TRUTH

    def logical(self, op, values, node):
        return TRUTH

    def negation(self, value, node):
        return TRUTH

    def piecewise(self, pieces, otherwise, node):
        values = [v for v, _ in pieces] + ([otherwise] if otherwise is not None else [])
        if _wild(*values):
            return UNDECLARED
        first = values[0]
        for v in values[1:]:
            if v.dimensionality != first.dimensionality:
                raise self.error(f"the values of piecewise must share one dimension, got "
                                 f"{dimension_text(first.dimensionality)} and "
                                 f"{dimension_text(v.dimensionality)}")
        return first

    def negate(self, value, node):
        return value

    def call(self, function, arg, node):
        if _wild(arg):
            return UNDECLARED if function in _SAME_DIMENSION | _SQRT_OK_WITH_UNITS else \
                ureg.Quantity(1.0)
        if function in _SQRT_OK_WITH_UNITS:
            return arg ** 0.5
        if function in _SAME_DIMENSION:
            return arg
        if not arg.dimensionless:
            raise self.error(f"{function}() needs a dimensionless argument, got "
                             f"{dimension_text(arg.dimensionality)} in "
                             f"{ast.unparse(node.args[0])!r}")
        return ureg.Quantity(1.0)

    def calls(self, function, args, node):
        if _wild(*args):
            return ureg.Quantity(1.0) if function == "quotient" else UNDECLARED
        first = args[0]
        for a in args[1:]:
            if a.dimensionality != first.dimensionality:
                raise self.error(f"the arguments of {function}() must share one dimension, "
                                 f"got {dimension_text(first.dimensionality)} and "
                                 f"{dimension_text(a.dimensionality)}")
        return ureg.Quantity(1.0) if function == "quotient" else first

    def binary(self, op, a, b, node):
        if _wild(a, b):  # never cancels: k/k of two undeclared values stays undeclared
            if op == "**" and not _wild(a) and not a.dimensionless:
                raise self.error(f"{ast.unparse(node.left)!r} has units "
                                 f"({dimension_text(a.dimensionality)}), so its exponent must "
                                 f"be a number, got {ast.unparse(node.right)!r}")
            return ureg.Quantity(1.0) if op == "**" and a.dimensionless else UNDECLARED
        if op in ("+", "-"):
            if a.dimensionality != b.dimensionality:
                raise self.error(
                    f"cannot {'add' if op == '+' else 'subtract'} "
                    f"{dimension_text(a.dimensionality)} ({ast.unparse(node.left)!r}) and "
                    f"{dimension_text(b.dimensionality)} ({ast.unparse(node.right)!r})")
            return ureg.Quantity(1.0, a.units) if a.units == b.units else \
                ureg.Quantity(1.0, (1 * b.units).to(a.units).units)
        if op == "*":
            return a * b
        if op == "/":
            return a / b
        if not b.dimensionless:
            raise self.error(f"exponent {ast.unparse(node.right)!r} must be dimensionless")
        if a.dimensionless:
            return ureg.Quantity(1.0)
        exponent = Expr(ast.unparse(node.right)).constant_value()
        if exponent is None:
            raise self.error(f"{ast.unparse(node.left)!r} has units "
                             f"({dimension_text(a.dimensionality)}), so its exponent must "
                             f"be a number, got {ast.unparse(node.right)!r}")
        return ureg.Quantity(1.0, a.units ** exponent)


def _wild(*values) -> bool:
    return any(is_undeclared(v) for v in values)


def parse_expr(text: str, *, where: str | None = None) -> Expr:
    """Parse and validate ``text``; raises :class:`ParseError` on anything not whitelisted.

    >>> e = parse_expr("kon*C*R - koff*RC")
    >>> sorted(e.names)
    ['C', 'R', 'RC', 'koff', 'kon']
    >>> parse_expr("__import__('os').system('true')")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mechsim.errors.ParseError: expression ...: function "__import__('os').system" is not allowed ...
    """
    return Expr(text, where)
