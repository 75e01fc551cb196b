"""Parameter-only parts of a model's RHS and Jacobian, computed once per run.

Written out, a model's rates repeat work that depends on parameters alone: allometric
factors such as ``(WT/WT_ref)**e_CL``, a Hill term's ``RO50**hill``, reciprocals of
volumes.  The integrator evaluates the RHS about 35,000 times in a year of dosing, so
the compiled engine takes the largest parameter-only subexpressions out of the RHS and
the Jacobian, names them ``_q0, _q1, ...`` and computes them once per run into an
extended parameter vector (the ``$MAIN`` block of mrgsolve, done by the compiler).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

__all__ = ["Hoisted", "hoist"]


@dataclass(frozen=True)
class Hoisted:
    """Expressions rewritten in terms of the parameters and ``derived`` symbols, whose
    values are ``derived_exprs`` (in parameters only)."""

    rhs: tuple[sympy.Expr, ...]
    jac: tuple[tuple[int, int, sympy.Expr], ...]
    derived: tuple[sympy.Symbol, ...]
    derived_exprs: tuple[sympy.Expr, ...]


def hoist(rhs, jac_entries, params) -> Hoisted:
    """Replace the maximal parameter-only subexpressions that cost something (anything but
    a lone symbol or number) by new symbols, shared where the same one recurs."""
    params = frozenset(params)
    names: dict[sympy.Expr, sympy.Symbol] = {}

    def name_of(e: sympy.Expr) -> sympy.Expr:
        if e.is_Atom:
            return e
        if e not in names:
            names[e] = sympy.Symbol(f"_q{len(names)}", real=True)
        return names[e]

    def constant(e: sympy.Expr) -> bool:
        # a condition of parameters only stays where it is: the extended parameter vector
        # holds numbers, and a piecewise needs a true/false there
        return e.free_symbols <= params and not isinstance(
            e, (sympy.logic.boolalg.Boolean, sympy.functions.elementary.piecewise.ExprCondPair))

    def walk(e: sympy.Expr) -> sympy.Expr:
        if constant(e):
            return name_of(e)
        if e.is_Atom:
            return e
        if e.is_Mul or e.is_Add:
            # group the constant factors (terms) into one: c1*c2*x -> q*x
            fixed = [a for a in e.args if constant(a)]
            varying = [walk(a) for a in e.args if not constant(a)]
            if len(fixed) > 1 or (fixed and not fixed[0].is_Atom):
                fixed = [name_of(e.func(*fixed))]
            return e.func(*fixed, *varying, evaluate=False)
        return e.func(*(walk(a) for a in e.args))

    new_rhs = tuple(walk(e) for e in rhs)
    new_jac = tuple((i, j, walk(e)) for i, j, e in jac_entries)
    return Hoisted(new_rhs, new_jac, tuple(names.values()), tuple(names))
