"""SBML math (a libsbml AST) -> mechsim expression text, node by node.

The text is then parsed by :class:`~mechsim.expr.Expr`, whose whitelist is the only gate:
nothing here is evaluated.  Text is generated from the tree, not with
``libsbml.formulaToL3String``, because SBML and Python disagree on ``a^b^c`` (SBML reads it
as ``(a^b)^c``) and on the names of functions.

Every piece of text comes with a precedence (Python's), so that parentheses go exactly where
they are needed, and a flag saying whether it is a condition (true/false) or a value: mechsim
keeps the two apart (conditions only in ``piecewise`` and triggers).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

from ..errors import ParseError
from ..expr import TIME
from .sbml_common import libsbml, one_line

__all__ = ["AVOGADRO", "MathText"]

#: Avogadro's number as SBML Level 3 defines its csymbol (the 2006 CODATA value)
AVOGADRO = 6.02214179e23

# precedences, loosest first (Python's order)
OR, AND, NOT, COMPARE, SUM, PRODUCT, UNARY, POWER, ATOM = range(-3, 6)

# MathML function -> mechsim function of one argument (mechsim.expr.FUNCTIONS)
_ONE = {
    "AST_FUNCTION_ABS": "abs", "AST_FUNCTION_FLOOR": "floor",
    "AST_FUNCTION_CEILING": "ceiling", "AST_FUNCTION_FACTORIAL": "factorial",
    "AST_FUNCTION_EXP": "exp", "AST_FUNCTION_LN": "log",
    "AST_FUNCTION_SIN": "sin", "AST_FUNCTION_COS": "cos", "AST_FUNCTION_TAN": "tan",
    "AST_FUNCTION_SEC": "sec", "AST_FUNCTION_CSC": "csc", "AST_FUNCTION_COT": "cot",
    "AST_FUNCTION_SINH": "sinh", "AST_FUNCTION_COSH": "cosh", "AST_FUNCTION_TANH": "tanh",
    "AST_FUNCTION_SECH": "sech", "AST_FUNCTION_CSCH": "csch", "AST_FUNCTION_COTH": "coth",
    "AST_FUNCTION_ARCSIN": "arcsin", "AST_FUNCTION_ARCCOS": "arccos",
    "AST_FUNCTION_ARCTAN": "arctan", "AST_FUNCTION_ARCSEC": "arcsec",
    "AST_FUNCTION_ARCCSC": "arccsc", "AST_FUNCTION_ARCCOT": "arccot",
    "AST_FUNCTION_ARCSINH": "arcsinh", "AST_FUNCTION_ARCCOSH": "arccosh",
    "AST_FUNCTION_ARCTANH": "arctanh", "AST_FUNCTION_ARCSECH": "arcsech",
    "AST_FUNCTION_ARCCSCH": "arccsch", "AST_FUNCTION_ARCCOTH": "arccoth",
}
# MathML function -> mechsim function of several arguments (mechsim.expr.N_ARY)
_MANY = {"AST_FUNCTION_MIN": "min", "AST_FUNCTION_MAX": "max", "AST_FUNCTION_REM": "rem",
         "AST_FUNCTION_QUOTIENT": "quotient"}
_RELATIONS = {"AST_RELATIONAL_EQ": "==", "AST_RELATIONAL_NEQ": "!=",
              "AST_RELATIONAL_GT": ">", "AST_RELATIONAL_LT": "<",
              "AST_RELATIONAL_GEQ": ">=", "AST_RELATIONAL_LEQ": "<="}
_REFUSED = {"AST_FUNCTION_DELAY": "delay", "AST_LAMBDA": "lambda",
            "AST_FUNCTION": "a function call"}


@dataclass(frozen=True)
class Piece:
    text: str
    prec: int
    condition: bool = False


class MathText:
    """Writes SBML math as mechsim text.

    ``name(sid, what)`` gives the text for an SBML id used as a value (a species, parameter,
    compartment, species reference, reaction, or local parameter); ``rate_of(sid, what)``
    the text of rateOf(sid), or raises; ``error(message)`` makes the ParseError.
    ``numbers_with_units``: numbers that carry ``sbml:units`` are used as written (models
    whose units are not checked); else ``unit_number(value, units, what)`` writes them (a
    quoted quantity), or they are refused when it is None.
    """

    def __init__(self, name: Callable[[str, str], str], rate_of: Callable[[str, str], str],
                 error: Callable[[str], ParseError], numbers_with_units: bool = False,
                 time: str = TIME, unit_number: Callable[[float, str, str], str] | None = None):
        self.L = libsbml()
        self.name = name
        self.rate_of = rate_of
        self.error = error
        self.numbers_with_units = numbers_with_units
        self.time = time
        self.unit_number = unit_number
        #: SBML numbers without units have undeclared units: write them as such
        self.undeclared_numbers = False
        self.exponent = 0
        L = self.L
        self.types = {getattr(L, k): k for k in
                      [*_ONE, *_MANY, *_RELATIONS, *_REFUSED] if hasattr(L, k)}

    def value(self, node, what: str) -> str:
        """The text of a value (a number)."""
        if node is None:
            raise self.error(f"{what} has no math")
        return self.as_number(self.piece(node, what)).text

    def condition(self, node, what: str) -> str:
        """The text of a condition (an event's trigger)."""
        if node is None:
            raise self.error(f"{what} has no math")
        return self.as_condition(self.piece(node, what)).text

    @staticmethod
    def as_number(p: Piece) -> Piece:
        """SBML L3V2 reads true as 1 and false as 0 where a number is needed."""
        if not p.condition:
            return p
        return Piece(f"piecewise(1, {p.text}, 0)", ATOM)

    @staticmethod
    def as_condition(p: Piece) -> Piece:
        """... and a number as true unless it is 0 where a condition is needed."""
        if p.condition:
            return p
        text = f"({p.text})" if p.prec < SUM else p.text
        return Piece(f"{text} != 0", COMPARE, True)

    def formula(self, node) -> str:
        return one_line(self.L.formulaToL3String(node))

    # ---------------------------------------------------------------------------------------
    def piece(self, n, what: str) -> Piece:
        L = self.L
        t = n.getType()
        kids = [n.getChild(i) for i in range(n.getNumChildren())]
        kind = self.types.get(t)

        def val(k, below: int) -> str:
            p = self.as_number(self.piece(k, what))
            return f"({p.text})" if p.prec < below else p.text

        def cond(k, below: int) -> str:
            p = self.as_condition(self.piece(k, what))
            return f"({p.text})" if p.prec < below else p.text

        if n.isNumber():
            v = float(n.getValue())
            if not math.isfinite(v):
                raise self.error(f"{what}: non-finite number {v} in {self.formula(n)!r}")
            if n.isSetUnits() and n.getUnits() not in ("", "dimensionless") and \
                    not self.numbers_with_units:
                if self.unit_number is None:
                    raise self.error(f"{what}: number with units '{n.getUnits()}' in "
                                     f"{self.formula(n)!r}: mechsim numbers in formulas are "
                                     "dimensionless (use a parameter)")
                return Piece(self.unit_number(v, n.getUnits(), what), ATOM)
            text = str(n.getInteger()) if t == L.AST_INTEGER else repr(v)
            if self.undeclared_numbers and not self.exponent and \
                    not (n.isSetUnits() and n.getUnits() == "dimensionless"):
                return Piece(f'"{text} undeclared"', ATOM)
            return Piece(text, UNARY if text.startswith("-") else ATOM)
        if t == L.AST_NAME:
            return Piece(self.name(n.getName(), what), ATOM)
        if t == L.AST_NAME_TIME:
            return Piece(self.time, ATOM)
        if t == L.AST_NAME_AVOGADRO:
            return Piece(repr(AVOGADRO), ATOM)
        if t == L.AST_CONSTANT_PI:
            return Piece(repr(math.pi), ATOM)
        if t == L.AST_CONSTANT_E:
            return Piece(repr(math.e), ATOM)
        if t in (L.AST_CONSTANT_TRUE, L.AST_CONSTANT_FALSE):
            return Piece("True" if t == L.AST_CONSTANT_TRUE else "False", ATOM, True)
        if t == L.AST_PLUS:
            return Piece(" + ".join(val(k, SUM) for k in kids), SUM) if kids else \
                Piece("0", ATOM)
        if t == L.AST_TIMES:
            return Piece("*".join(val(k, PRODUCT) for k in kids), PRODUCT) if kids else \
                Piece("1", ATOM)
        if t == L.AST_MINUS and len(kids) == 1:
            return Piece(f"-{val(kids[0], UNARY)}", UNARY)
        if t == L.AST_MINUS and len(kids) == 2:
            return Piece(f"{val(kids[0], SUM)} - {val(kids[1], PRODUCT)}", SUM)
        if t == L.AST_DIVIDE and len(kids) == 2:
            return Piece(f"{val(kids[0], PRODUCT)}/{val(kids[1], UNARY)}", PRODUCT)
        if t in (L.AST_POWER, L.AST_FUNCTION_POWER) and len(kids) == 2:
            base = val(kids[0], ATOM)
            self.exponent += 1  # exponents stay plain numbers
            try:
                return Piece(f"{base}**{val(kids[1], UNARY)}", POWER)
            finally:
                self.exponent -= 1
        if t == L.AST_FUNCTION_LOG:
            if len(kids) == 1:
                return Piece(f"log10({val(kids[0], OR)})", ATOM)
            base, arg = kids
            if base.isNumber() and base.getValue() == 10:
                return Piece(f"log10({val(arg, OR)})", ATOM)
            return Piece(f"log({val(arg, OR)})/log({val(base, OR)})", PRODUCT)
        if t == L.AST_FUNCTION_ROOT:
            if len(kids) == 1:
                return Piece(f"sqrt({val(kids[0], OR)})", ATOM)
            degree, arg = kids
            if degree.isNumber() and degree.getValue() == 2:
                return Piece(f"sqrt({val(arg, OR)})", ATOM)
            return Piece(f"{val(arg, ATOM)}**(1/{val(degree, UNARY)})", POWER)
        if kind in _ONE and len(kids) == 1:
            return Piece(f"{_ONE[kind]}({val(kids[0], OR)})", ATOM)
        if kind in _MANY and kids:
            if kind in ("AST_FUNCTION_MIN", "AST_FUNCTION_MAX") and len(kids) == 1:
                return self.piece(kids[0], what)
            return Piece(f"{_MANY[kind]}({', '.join(val(k, OR) for k in kids)})", ATOM)
        if kind in _RELATIONS and len(kids) >= 2:
            op = _RELATIONS[kind]
            parts = [f"{val(a, SUM)} {op} {val(b, SUM)}" for a, b in pairwise(kids)]
            if len(parts) == 1:
                return Piece(parts[0], COMPARE, True)
            return Piece(" and ".join(parts), AND, True)
        if t == L.AST_LOGICAL_NOT and len(kids) == 1:
            return Piece(f"not {cond(kids[0], NOT)}", NOT, True)
        if t in (L.AST_LOGICAL_AND, L.AST_LOGICAL_OR):
            if not kids:  # MathML: and() is true, or() is false
                return Piece("True" if t == L.AST_LOGICAL_AND else "False", ATOM, True)
            if len(kids) == 1:
                return self.piece(kids[0], what)
            word, prec = ("and", AND) if t == L.AST_LOGICAL_AND else ("or", OR)
            return Piece(f" {word} ".join(cond(k, prec + 1) for k in kids), prec, True)
        if t == getattr(L, "AST_LOGICAL_IMPLIES", None) and len(kids) == 2:
            return Piece(f"not {cond(kids[0], NOT)} or {cond(kids[1], AND)}", OR, True)
        if t == L.AST_LOGICAL_XOR:
            if not kids:
                return Piece("False", ATOM, True)
            out = cond(kids[0], NOT)
            for k in kids[1:]:  # true when an odd number of arguments is true
                b = cond(k, NOT)
                out = f"({out}) and not ({b}) or not ({out}) and ({b})"
            return Piece(out, OR, True)
        if t == L.AST_FUNCTION_PIECEWISE and kids:
            args = []
            for k, child in enumerate(kids):
                is_condition = k % 2 == 1
                args.append(cond(child, OR) if is_condition else val(child, OR))
            if len(kids) == 1:  # piecewise(otherwise) alone
                return Piece(args[0], ATOM)
            return Piece(f"piecewise({', '.join(args)})", ATOM)
        if t == getattr(L, "AST_FUNCTION_RATE_OF", None) and len(kids) == 1 and \
                kids[0].getType() == L.AST_NAME:
            return Piece(f"({self.rate_of(kids[0].getName(), what)})", ATOM)
        label = _REFUSED.get(kind) or n.getName() or kind or "this MathML"
        raise self.error(f"{what}: {label}(...) is not supported in {self.formula(n)!r}")
