"""Straight-line LU factorisation and solve for one model's Newton matrix I - c J.

The compiler knows which entries of a model's Jacobian can be non-zero (the benchmark's
12-state model: 44 of 144 with the diagonal).  Eliminating in the states' order on that
pattern fills in a known set of further entries (33 there), so the factorisation and the
triangular solves can be written out as straight-line code over those entries only, with
every value a local variable: no loops, no index arithmetic, no work on structural zeros.
A dense 12 x 12 solve spends most of its time waiting on loads and stores of the
right-hand side; this one keeps it in registers.

There is no row exchange in a fixed pattern, so a pivot is accepted only when it passes
the threshold test of sparse direct solvers (UMFPACK, SuperLU): at least ``THRESHOLD``
times the largest entry below it in its column.  For I - c J that holds while c is small
against the model's time scales; when it fails (or a pivot is zero or not finite) the
factorisation reports it and the caller uses dense LU with partial pivoting instead.

The functions are assembled as an AST from integer index patterns only (no text from a
model file is involved) and compiled by numba in :mod:`.ndf_kernel`.
"""

from __future__ import annotations

import ast
import types
from collections.abc import Iterable

__all__ = ["THRESHOLD", "SparseLU", "sparse_lu"]

THRESHOLD = 0.1


class SparseLU:
    """The generated ``factor(jm, c, vals) -> bool`` and ``solve(vals, b, offset)`` of one
    pattern (``factor_def`` and ``solve_def`` are their ASTs), and ``size``, the length of
    ``vals`` (the L and U entries, then the reciprocals of U's diagonal)."""

    def __init__(self, n: int, nonzeros: Iterable[tuple[int, int]]):
        self.n = n
        jacobian = set(nonzeros)
        filled = set(jacobian) | {(i, i) for i in range(n)}
        for k in range(n):
            below = [i for i in range(k + 1, n) if (i, k) in filled]
            right = [j for j in range(k + 1, n) if (k, j) in filled]
            filled.update((i, j) for i in below for j in right)
        self.jacobian = jacobian
        self.entries = sorted(filled)
        self.position = {e: p for p, e in enumerate(self.entries)}
        self.size = len(self.entries) + n
        self.factor_def = self._factor()
        self.solve_def = self._solve()
        self.factor = _compile(self.factor_def)
        self.solve = _compile(self.solve_def)

    def _inverse_slot(self, k: int) -> int:
        return len(self.entries) + k

    def _factor(self) -> ast.FunctionDef:
        n, body = self.n, []
        a = {e: f"a_{e[0]}_{e[1]}" for e in self.entries}
        for (i, j) in self.entries:
            value = ast.Constant(1.0 if i == j else 0.0)
            if (i, j) in self.jacobian:
                term = _mul(_name("c"), _index("jm", i, j))
                value = _sub(value, term) if i == j else ast.UnaryOp(ast.USub(), term)
            body.append(_assign(a[i, j], value))
        # one flag and no early return: straight-line code without branches compiles in a
        # fraction of the time (a failed test only wastes the rest of this factorisation)
        body.append(_assign("ok", ast.Constant(True)))
        for k in range(n):
            below = [i for i in range(k + 1, n) if (i, k) in a]
            right = [j for j in range(k + 1, n) if (k, j) in a]
            pivot = _call("abs", _name(a[k, k]))
            # |pivot| > 0 is False for NaN too
            tests = [ast.Compare(pivot, [ast.Gt()], [ast.Constant(0.0)])]
            tests += [ast.Compare(pivot, [ast.GtE()], [_mul(ast.Constant(THRESHOLD),
                                                           _call("abs", _name(a[i, k])))])
                      for i in below]
            for test in tests:
                body.append(_assign("ok", ast.BinOp(_name("ok"), ast.BitAnd(), test)))
            body.append(_assign(f"d_{k}", ast.BinOp(ast.Constant(1.0), ast.Div(),
                                                    _name(a[k, k]))))
            for i in below:
                body.append(_assign(a[i, k], _mul(_name(a[i, k]), _name(f"d_{k}"))))
                for j in right:
                    body.append(_assign(a[i, j], _sub(_name(a[i, j]),
                                                      _mul(_name(a[i, k]), _name(a[k, j])))))
        for e in self.entries:
            body.append(_store("vals", self.position[e], _name(a[e])))
        for k in range(n):
            body.append(_store("vals", self._inverse_slot(k), _name(f"d_{k}")))
        body.append(ast.Return(_name("ok")))
        return _function("sparse_lu_factor", ("jm", "c", "vals"), body)

    def _solve(self) -> ast.FunctionDef:
        n, body = self.n, []
        for i in range(n):
            body.append(_assign(f"b_{i}", _subscript("b", _offset(i))))
        for i in range(n):  # L y = b, unit diagonal
            for j in range(i):
                if (i, j) in self.position:
                    body.append(_assign(f"b_{i}", _sub(_name(f"b_{i}"), _mul(
                        _subscript("vals", ast.Constant(self.position[i, j])),
                        _name(f"b_{j}")))))
        for i in range(n - 1, -1, -1):  # U x = y
            for j in range(i + 1, n):
                if (i, j) in self.position:
                    body.append(_assign(f"b_{i}", _sub(_name(f"b_{i}"), _mul(
                        _subscript("vals", ast.Constant(self.position[i, j])),
                        _name(f"b_{j}")))))
            body.append(_assign(f"b_{i}", _mul(
                _name(f"b_{i}"), _subscript("vals", ast.Constant(self._inverse_slot(i))))))
        for i in range(n):
            body.append(ast.Assign(targets=[ast.Subscript(
                value=_name("b"), slice=_offset(i), ctx=ast.Store())], value=_name(f"b_{i}")))
        body.append(ast.Return(ast.Constant(None)))
        return _function("sparse_lu_solve", ("vals", "b", "offset"), body)


def sparse_lu(n: int, nonzeros: Iterable[tuple[int, int]]) -> SparseLU:
    """The straight-line LU of an ``n`` x ``n`` matrix I - c J, J non-zero at ``nonzeros``."""
    return SparseLU(n, nonzeros)


# ---- AST helpers ------------------------------------------------------------------------------
def _name(id_: str, store: bool = False) -> ast.Name:
    return ast.Name(id=id_, ctx=ast.Store() if store else ast.Load())


def _assign(target: str, value: ast.expr) -> ast.Assign:
    return ast.Assign(targets=[_name(target, store=True)], value=value)


def _mul(a: ast.expr, b: ast.expr) -> ast.BinOp:
    return ast.BinOp(a, ast.Mult(), b)


def _sub(a: ast.expr, b: ast.expr) -> ast.BinOp:
    return ast.BinOp(a, ast.Sub(), b)


def _call(fn: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=_name(fn), args=list(args), keywords=[])


def _index(array: str, *indices: int) -> ast.Subscript:
    return ast.Subscript(value=_name(array), ctx=ast.Load(), slice=ast.Tuple(
        elts=[ast.Constant(i) for i in indices], ctx=ast.Load()))


def _subscript(array: str, index: ast.expr) -> ast.Subscript:
    return ast.Subscript(value=_name(array), slice=index, ctx=ast.Load())


def _offset(i: int) -> ast.expr:
    return ast.BinOp(_name("offset"), ast.Add(), ast.Constant(i))


def _store(array: str, position: int, value: ast.expr) -> ast.Assign:
    return ast.Assign(targets=[ast.Subscript(value=_name(array), slice=ast.Constant(position),
                                             ctx=ast.Store())], value=value)


def _function(name: str, args: tuple[str, ...], body: list[ast.stmt]) -> ast.FunctionDef:
    fn = ast.FunctionDef(
        name=name,
        args=ast.arguments(posonlyargs=[], args=[ast.arg(arg=a) for a in args], vararg=None,
                           kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[]),
        body=body, decorator_list=[], returns=None, type_params=[])
    return ast.fix_missing_locations(fn)


def _compile(fn: ast.FunctionDef) -> types.FunctionType:
    name = fn.name
    module = ast.fix_missing_locations(ast.Module(body=[fn], type_ignores=[]))
    code = compile(module, filename=f"<mechsim generated sparse LU {name}>", mode="exec")
    fn_code = next(c for c in code.co_consts if isinstance(c, types.CodeType))
    return types.FunctionType(fn_code, {"__builtins__": {}, "abs": abs}, name)
