"""A compiled stiff integrator: the model's RHS and Jacobian and a variable-order NDF method,
all compiled by numba, integrating one run from dose to dose without returning to Python.

Why: scipy's integrators call back into Python at every step; for a 12-state model that is
most of the run time (a year of isatuximab dosing takes ~30,000 LSODA steps at rtol 1e-8).
Here the whole run, including restarts at doses and interpolation onto the output grid, is
one call into machine code that releases the GIL, so several runs proceed in parallel
threads.  numba is optional (``pip install "mechsim[fast]"``); :func:`available` says whether
it is there, and callers fall back to LSODA when it is not.

The method is the quasi-constant step size family of numerical differentiation formulas
(NDF, orders 1-5) described by Shampine and Reichelt, "The MATLAB ODE Suite", SIAM J. Sci.
Comput. 18 (1997) 1-22: backward differences are kept for an equal step, rescaled when the
step changes; the corrector is solved by a simplified Newton iteration with the analytic
Jacobian, kept between steps and factorisations as CVODE and SciPy's BDF keep theirs (see
:func:`_segment`); the local error is measured in the weighted RMS norm
``sqrt(mean((err/(atol + rtol|y|))**2))``, the norm CVODE uses.

The step loop allocates nothing: the RHS and Jacobian are generated to write into arrays
of a workspace made once per run, and the differences are rescaled in place.  The RHS
and Jacobian read an extended parameter vector in which their parameter-only parts are
computed once per run (:mod:`.hoist`), and the Newton matrix is factorised by
straight-line code on the Jacobian's sparsity pattern (:mod:`.sparse_lu`).  Measured on
the benchmark's 12-state model (a year of isatuximab dosing, rtol 1e-8), per run on one
thread: before these, 15,592 steps, 15,734 Jacobians and as many dense factorisations,
36 ms; after, 15,864 steps, 850 Jacobians, about 3,300 factorisations, 6.1 ms.
"""

from __future__ import annotations

import ast
import functools
import math

import numpy as np

from ..codegen import compile_def, function_def
from .hoist import Hoisted, hoist
from .sparse_lu import sparse_lu

__all__ = ["STATUS_TEXT", "available", "chunk_runner", "piece_runner"]

try:  # optional dependency
    import numba
except ImportError:  # pragma: no cover - exercised only without the extra
    numba = None

MAX_ORDER = 5
NEWTON_MAXITER = 4
MIN_FACTOR = 0.2
MAX_FACTOR = 10.0
# NDF constants: kappa per order (Shampine & Reichelt 1997, table 1; order 5 is plain BDF)
_KAPPA = np.array([0.0, -0.1850, -1.0 / 9.0, -0.0823, -0.0415, 0.0])
_GAMMA = np.concatenate(([0.0], np.cumsum(1.0 / np.arange(1, MAX_ORDER + 1))))
_ALPHA = (1.0 - _KAPPA) * _GAMMA
_ERROR_CONST = _KAPPA * _GAMMA + 1.0 / np.arange(1, MAX_ORDER + 2)

OK, TOO_MANY_STEPS, STEP_TOO_SMALL, NOT_FINITE, ROOT = 0, 1, 2, 3, 4
STATUS_TEXT = {
    TOO_MANY_STEPS: "too many steps",
    STEP_TOO_SMALL: "the step size fell below the resolution of t (the corrector did not "
                    "converge or the error test kept failing)",
    NOT_FINITE: "the model returned NaN or infinity",
}


def available() -> bool:
    """True when numba is installed and the compiled engine can be used."""
    return numba is not None


def chunk_runner(cm):
    """``run(params, offsets, starts, ends, rates, jumps, grid, rtol, atol, y0, out, pre,
    stats, status)``: runs of a compiled model in one call (see :func:`_run_chunk`; one run
    is a chunk of one), compiled on first use and cached on the model.  The model's RHS and
    Jacobian are generated to write into the integrator's workspace."""
    return cm._fn("numba-chunk-runner",
                  lambda: functools.partial(_run_chunk, *_model_functions(cm)))


def piece_runner(cm):
    """``run(n_roots, params, a, b, u, y, grid, out, rtol, atol, stats, roots)``: one piece
    of a run of a model with events (see :func:`_run_piece`), compiled on first use."""
    def build():
        f = _compiled(cm)
        return functools.partial(_run_piece, f["rhs"], f["jac"], f["factor"], f["solve"],
                                 f["roots"], cm.jacobian_blocks, f["size"])
    return cm._fn("numba-piece-runner", build)


def _model_functions(cm):
    """(rhs, jac, sparse_factor, sparse_solve, blocks, size of the factor's values)
    compiled for the model, once (both runners share them); the factor and solve are the
    straight-line LU of the Jacobian block's sparsity pattern (:mod:`.sparse_lu`)."""
    f = _compiled(cm)
    return f["rhs"], f["jac"], f["factor"], f["solve"], cm.jacobian_blocks, f["size"]


#: What the generated module imports: the numba helpers under the names the generated
#: code calls (see :func:`_helpers`)
_IMPORTS = ("from numpy import sign as _sign, zeros as _zeros\n\n"
            "from mechsim.solvers.ndf_kernel import _nb_exp as _exp\n"
            "from mechsim.solvers.ndf_kernel import _nb_log as _log\n"
            "from mechsim.solvers.ndf_kernel import _nb_pow as _pow\n"
            "from mechsim.solvers.ndf_kernel import _nb_sqrt as _sqrt\n"
            "from mechsim.solvers.ndf_kernel import _NB_MATHML\n\n"
            "_abs = abs\n"
            + "".join(f"{name} = _NB_MATHML[{name!r}]\n" for name in (
                "_sin", "_cos", "_tan", "_sinh", "_cosh", "_tanh", "_asin", "_acos", "_atan",
                "_asinh", "_acosh", "_atanh", "_floor", "_ceil", "_factorial", "_step",
                "_min", "_max")))


def _compiled(cm) -> dict:
    """The model's numba functions by role (rhs, jac, factor, solve and, when the model
    has parameter-only subexpressions, derive), built once per compiled model.

    They are written as one module to mechsim's cache folder (:mod:`.model_cache`) and
    compiled from there with numba's disk cache, so a later process loads machine code
    instead of compiling it (about 6 s for the anti-CD38 model); without a usable cache
    folder they are compiled in memory."""
    def build():
        defs = _definitions(cm)
        module = None
        if all(_writable(d) for d in defs.values()):
            from . import model_cache

            module = model_cache.load_module(model_cache.module_text(
                "The compiled engine's functions of one model.", _IMPORTS,
                list(defs.values())))
        sig = _signatures()
        out = {"size": _lu(cm).size}
        for role, definition in defs.items():
            if module is not None:
                py_func = getattr(module, definition.name)
            else:
                py_func = compile_def(definition, {**_helpers(), "abs": abs})
            options = {"cache": module is not None}
            if role != "solve":
                options["error_model"] = "numpy"
            out[role] = numba.njit(sig[role], **options)(py_func)
        return out
    return cm._fn("numba-model-functions", build)


def _definitions(cm) -> dict:
    """The ASTs of the model's generated functions, by role."""
    h = _hoisted(cm)
    symbols = {"y": cm.states, "p": (*cm.params, *h.derived)}
    n = len(cm.states)
    block = n // cm.jacobian_blocks  # one diagonal block when the Jacobian is block diagonal
    lu = _lu(cm)
    defs = {
        "rhs": function_def("rhs", ("t", "y", "p"), symbols,
                            [((i,), e) for i, e in enumerate(h.rhs)], (n,), "numba",
                            into=True),
        "jac": function_def("jac", ("t", "y", "p"), symbols,
                            [((i, j), e) for i, j, e in h.jac], (block, block), "numba",
                            into=True),
        "factor": lu.factor_def,
        "solve": lu.solve_def,
        # the events' root functions (a model without events gets one that writes nothing)
        "roots": function_def("roots", ("t", "y", "p"), symbols,
                              [((j,), _hoisted_roots(cm)[j]) for j in
                               range(len(cm.event_roots))],
                              (max(len(cm.event_roots), 1),), "numba", into=True),
    }
    if h.derived:
        n_params = len(cm.params)
        defs["derive"] = function_def(
            "derive", ("p",), {"p": cm.params},
            [((n_params + k,), e) for k, e in enumerate(h.derived_exprs)],
            (n_params + len(h.derived),), "numba", into=True)
    return defs


def _lu(cm):
    return cm._fn("numba-sparse-lu", lambda: sparse_lu(
        len(cm.states) // cm.jacobian_blocks, [(i, j) for i, j, _ in cm.jac_entries]))


def _writable(definition: ast.FunctionDef) -> bool:
    """Whether the definition reads the same when written out as source: every number in
    it is finite (``ast.unparse`` has no literal for NaN)."""
    return all(not isinstance(node, ast.Constant) or not isinstance(node.value, float)
               or math.isfinite(node.value) for node in ast.walk(definition))


def _signatures() -> dict:
    from numba import types

    vec, mat = types.float64[::1], types.float64[:, ::1]
    rhs = types.void(types.float64, vec, vec, vec)
    jac = types.void(types.float64, vec, vec, mat)
    derive = types.void(vec, vec)
    factor = types.boolean(mat, types.float64, vec)
    solve = types.void(vec, vec, types.int64)
    model = (types.FunctionType(rhs), types.FunctionType(jac), types.FunctionType(factor),
             types.FunctionType(solve), types.int64, types.int64)
    chunk = types.void(*model, mat, types.int64[::1], vec, vec, mat, mat, vec, types.float64,
                       vec, mat, types.float64[:, :, ::1], mat, mat, types.int64[::1])
    piece = types.Tuple((types.int64, types.float64))(
        types.FunctionType(rhs), types.FunctionType(jac), types.FunctionType(factor),
        types.FunctionType(solve), types.FunctionType(rhs), types.int64, types.int64,
        types.int64, vec, types.float64, types.float64, vec, vec, vec, mat, types.float64,
        vec, vec, mat)
    return {"rhs": rhs, "jac": jac, "derive": derive, "factor": factor, "solve": solve,
            "chunk": chunk, "roots": rhs, "piece": piece}


def _hoisted_roots(cm) -> tuple:
    """The events' root functions with the hoisted symbols the RHS uses substituted."""
    h = _hoisted(cm)
    names = dict(zip(h.derived_exprs, h.derived))
    return tuple(g.xreplace(names) for g in cm.event_roots)


def _hoisted(cm) -> Hoisted:
    return cm._fn("numba-hoisted", lambda: hoist(cm.rhs_exprs, cm.jac_entries, cm.params))


def extended_parameters(cm, p: np.ndarray) -> np.ndarray:
    """``p`` followed by the parameter-only values the compiled RHS and Jacobian read
    (:mod:`.hoist`), computed once per run by compiled code: every path (one run, a chunk)
    gets the same bits."""
    h = _hoisted(cm)
    out = np.empty(len(cm.params) + len(h.derived))
    out[:len(cm.params)] = p
    if h.derived:
        _compiled(cm)["derive"](out, out)
    return out


_HELPER_CACHE: dict = {}


def _helpers() -> dict:
    if not _HELPER_CACHE:
        _HELPER_CACHE.update({
            "_pow": _nb_pow, "_log": _nb_log, "_sqrt": _nb_sqrt, "_exp": _nb_exp,
            "_abs": abs, "_sign": np.sign, "_zeros": np.zeros, **_NB_MATHML,
        })
    return _HELPER_CACHE


# --------------------------------------------------------------------------------------------
# Everything below is compiled by numba when it is installed; without numba the decorator is
# the identity and nothing here is called.
def _jit(fn):
    return numba.njit(cache=True, nogil=True)(fn) if numba is not None else fn






@_jit
def _nb_pow(x, e):
    # same convention as codegen._safe_pow: solver noise below zero is taken as zero
    x = max(x, 0.0)
    if x == 0.0 and e < 0.0:
        return math.inf
    # Exponents are parameters, and the common ones (a Hill coefficient of 1 or 2, its
    # derivative's exponent 1) are integers: a multiplication is a few cycles where libm's
    # pow is about a hundred, and the branch is always predicted.  Products of at most two
    # factors round exactly as pow does (both correctly rounded for e = 2).
    if e == 2.0:
        return x * x
    if e == 1.0:
        return x
    return x ** e


@_jit
def _nb_log(x):
    if x > 0.0:
        return math.log(x)
    return -math.inf if x == 0.0 else math.nan


@_jit
def _nb_sqrt(x):
    return math.sqrt(x) if x >= 0.0 else math.nan


# MathML's functions (mechsim.expr.FUNCTIONS), under the helper names codegen prints; numba
# compiles math's functions itself, and these give a float where math returns an int
@_jit
def _nb_floor(x):
    return float(math.floor(x))


@_jit
def _nb_ceil(x):
    return float(math.ceil(x))


@_jit
def _nb_factorial(x):
    return math.gamma(x + 1.0)


@_jit
def _nb_step(x):
    return 1.0 if x > 0.0 else (0.0 if x < 0.0 else 0.5)


@_jit
def _nb_min(a, b):
    return min(a, b)


@_jit
def _nb_max(a, b):
    return max(a, b)


_NB_MATHML = {"_sin": math.sin, "_cos": math.cos, "_tan": math.tan, "_sinh": math.sinh,
              "_cosh": math.cosh, "_tanh": math.tanh, "_asin": math.asin,
              "_acos": math.acos, "_atan": math.atan, "_asinh": math.asinh,
              "_acosh": math.acosh, "_atanh": math.atanh, "_floor": _nb_floor,
              "_ceil": _nb_ceil, "_factorial": _nb_factorial, "_step": _nb_step,
              "_min": _nb_min, "_max": _nb_max}


@_jit
def _nb_exp(x):
    return math.exp(x) if x < 709.0 else math.inf


@_jit
def _rms(x, weight):
    """The weighted RMS norm, ``weight`` from :func:`_weights`."""
    s = 0.0
    for i in range(x.shape[0]):
        r = x[i] * weight[i]
        s += r * r
    return math.sqrt(s / x.shape[0])


@_jit
def _lu_factor(a, piv):
    """In-place LU with partial pivoting; False if the matrix is singular.  The diagonal
    of U is stored as its reciprocal: the back substitution then multiplies, and a
    division's latency is not on its critical path twelve times over."""
    n = a.shape[0]
    for k in range(n):
        p, big = k, abs(a[k, k])
        for i in range(k + 1, n):
            if abs(a[i, k]) > big:
                p, big = i, abs(a[i, k])
        piv[k] = p
        if big == 0.0 or not math.isfinite(big):
            return False
        if p != k:
            for j in range(n):
                a[k, j], a[p, j] = a[p, j], a[k, j]
        inv = 1.0 / a[k, k]
        for i in range(k + 1, n):
            a[i, k] *= inv
            f = a[i, k]
            if f != 0.0:  # structural zeros of the Jacobian: skip the row
                for j in range(k + 1, n):
                    a[i, j] -= f * a[k, j]
        a[k, k] = inv
    return True


@_jit
def _lu_solve(a, piv, b):
    """Solve in place on ``b`` with the factors of :func:`_lu_factor`."""
    n = a.shape[0]
    for k in range(n):
        p = piv[k]
        if p != k:
            b[k], b[p] = b[p], b[k]
    for i in range(n):
        s = b[i]
        for j in range(i):
            s -= a[i, j] * b[j]
        b[i] = s
    for i in range(n - 1, -1, -1):
        s = b[i]
        for j in range(i + 1, n):
            s -= a[i, j] * b[j]
        b[i] = s * a[i, i]  # the reciprocal, see _lu_factor


#: U of the difference rescaling (Shampine & Reichelt 1997, section 2.3), U_ij =
#: prod_{m<=i} (m - 1 - j)/m: it depends on i and j only, so every order uses a leading
#: block of this one matrix.
_U = np.ones((MAX_ORDER + 1, MAX_ORDER + 1))
for _i in range(1, MAX_ORDER + 1):
    _U[_i, 0] = 0.0
    for _j in range(1, MAX_ORDER + 1):
        _U[_i, _j] = _U[_i - 1, _j] * (_i - 1 - _j) / _i


@_jit
def _rescale(d, order, factor, r, ru, tmp):
    """Rescale the backward differences ``d[:order+1]`` from step h to ``factor*h``, in place.

    The differences of the interpolating polynomial at the new spacing are a linear map of
    the old ones: D_new = (R(factor) U)^T D_old with R_ij = prod_{m<=i} (m - 1 - factor j)/m.
    ``r``, ``ru`` ((MAX_ORDER+1)^2) and ``tmp`` ((MAX_ORDER+1, n)) are workspace.
    """
    k = order + 1
    n = d.shape[1]
    for j in range(k):
        r[0, j] = 1.0
    for i in range(1, k):
        r[i, 0] = 0.0
        for j in range(1, k):
            r[i, j] = r[i - 1, j] * (i - 1 - factor * j) / i
    for i in range(k):
        for j in range(k):
            s = 0.0
            for m in range(k):
                s += r[i, m] * _U[m, j]
            ru[i, j] = s
    for j in range(k):
        for c in range(n):
            s = 0.0
            for i in range(k):
                s += ru[i, j] * d[i, c]
            tmp[j, c] = s
    for j in range(k):
        for c in range(n):
            d[j, c] = tmp[j, c]


@_jit
def _interpolate(d, order, t, h, at, dest):
    """Value at ``at`` of the polynomial through the last ``order+1`` points (t, t-h, ...)."""
    n = d.shape[1]
    for c in range(n):
        dest[c] = d[0, c]
    prod = 1.0
    for j in range(order):
        prod *= (at - (t - j * h)) / ((j + 1) * h)
        for c in range(n):
            dest[c] += d[j + 1, c] * prod


@_jit
def _weights(y, rtol, atol, weight):
    """1 / (atol + rtol |y|): the norms then multiply, and the divisions (a dozen cycles
    each) happen once per weight rather than once per norm."""
    for i in range(y.shape[0]):
        weight[i] = 1.0 / (atol[i] + rtol * abs(y[i]))


@_jit
def _rms_times(x, factor, weight):
    """``_rms(factor * x, weight)`` without the temporary."""
    s = 0.0
    for i in range(x.shape[0]):
        r = factor * x[i] * weight[i]
        s += r * r
    return math.sqrt(s / x.shape[0])


@_jit
def _newton_matrix(jm, c, lu, piv):
    """Factorise I - c J into ``lu``/``piv``; False if singular."""
    nb = jm.shape[0]
    for i in range(nb):
        for j in range(nb):
            lu[i, j] = -c * jm[i, j]
        lu[i, i] += 1.0
    return _lu_factor(lu, piv)


def _workspace(n, nb, size):
    """Every array the step loop writes, allocated once per run (see :func:`_segment`)."""
    return (np.zeros((MAX_ORDER + 3, n)),       # d: backward differences
            np.zeros((nb, nb)),                 # jm: the Jacobian (block); zeros stay zero
            np.empty((nb, nb)),                 # lu: factors of I - c J
            np.empty(nb, dtype=np.int64),       # piv
            np.empty((7, n)),                   # y_pred, psi, y_new, corr, dy, f, weight_new
            np.empty(n),                        # weight: 1 / (atol + rtol |y|) at the last point
            np.empty((2, MAX_ORDER + 1, MAX_ORDER + 1)),  # r, ru of _rescale
            np.empty((MAX_ORDER + 1, n)),       # tmp of _rescale
            np.zeros(size))                     # vals: the straight-line LU's factors


if numba is not None:
    _workspace = numba.njit(cache=True, nogil=True)(_workspace)

#: An accepted step ages the Jacobian; past this age it is evaluated afresh at the next
#: step even if the corrector still converges (CVODE's MSBJ is 51 steps; here the RHS is
#: as cheap as the factorisation, so stale matrices pay off less).
JACOBIAN_MAX_AGE = 20
#: Step-size increases below this factor are not taken (CVODE's ETAMIN threshold of 1.5
#: for growth): every change costs a rescaling and a refactorisation, and small increases
#: buy almost no progress.
MIN_GROWTH = 1.2


@_jit
def _segment(rhs, jac, sparse_factor, sparse_solve, blocks, p, u, a, b, y, grid, g, out, rtol, atol,
             stats, max_steps, ws, groot, n_roots, roots):
    """Integrate from ``a`` to ``b`` starting at ``y`` (overwritten with y(b)).

    With ``n_roots`` > 0 it watches the functions ``groot`` writes (an event's comparisons,
    ``lhs - rhs``): at the first step across which one changes sign it locates the crossing
    (:func:`_crossing`), fills the output points up to it, leaves the state there in ``y``
    and returns ROOT and its time.  ``roots`` holds their values: row 0 at the last
    accepted point (``groot`` at ``a`` on entry), row 1 at the stop.

    Output points ``a < grid[g..] < b`` are filled by interpolation.  Returns (status, g, t).
    With ``blocks`` > 1 the Newton matrix is block diagonal with that many copies of the
    block ``jac`` returns (the simultaneous corrector of sensitivity equations, as in
    CVODES): one factorisation of the small block serves them all.  ``ws`` is the
    workspace of :func:`_workspace`: nothing is allocated here.

    The Newton matrix I - c J is factorised again only when c = h/alpha changes (the step
    size or the order changed), and the Jacobian J is evaluated again only when the
    corrector fails to converge with a Jacobian from an earlier step or when it is older
    than JACOBIAN_MAX_AGE steps (the strategy of SciPy's BDF, with CVODE's age limit); a
    corrector that fails with a fresh Jacobian halves the step.
    """
    d, jm, lu, piv, vec, weight, rescale_mats, tmp, vals = ws
    y_pred, psi, y_new, corr, dy, f, weight_new = (vec[0], vec[1], vec[2], vec[3], vec[4],
                                                   vec[5], vec[6])
    r, ru = rescale_mats[0], rescale_mats[1]
    # Time runs locally from 0 to span = b - a: the step-size floor is then set by the
    # segment's length, not by the size of t (late in a long run a fast transient after a
    # dose needs steps finer than the spacing of floats near t = 600 days).
    span = b - a
    n = y.shape[0]
    nb = n // blocks
    gamma, alpha, error_const = _GAMMA, _ALPHA, _ERROR_CONST
    eps = 2.220446049250313e-16
    # Corrector tolerance in the error test's norm: SciPy's BDF uses min(0.03, rtol**0.5),
    # CVODE about 0.1.  rtol**0.25 keeps 0.03 at ordinary tolerances and tightens it more
    # gently at tight ones; measured, it cuts the RHS evaluations by a quarter at rtol 1e-8 and
    # keeps solutions smooth enough in the parameters for central differences at 1e-11
    # (tests/estimation/test_gradients.py; 0.03 everywhere does not).
    newton_tol = max(10.0 * eps / rtol, min(0.03, rtol ** 0.25))
    n_grid = grid.shape[0]

    # initial step (Hairer, Norsett & Wanner, Solving ODEs I, II.4), for order 1;
    # psi holds f(a, y), y_new the Euler point, f the RHS there
    rhs(a, y, p, psi)
    stats[1] += 1
    for i in range(n):
        psi[i] += u[i]
    _weights(y, rtol, atol, weight)
    d0, d1 = _rms(y, weight), _rms(psi, weight)
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    h0 = min(h0, span)
    for i in range(n):
        y_new[i] = y[i] + h0 * psi[i]
    rhs(a + h0, y_new, p, f)
    stats[1] += 1
    for i in range(n):
        dy[i] = f[i] + u[i] - psi[i]
    d2 = _rms(dy, weight) / h0
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = math.sqrt(0.01 / max(d1, d2))
    h = min(100.0 * h0, h1, span)
    # A state near zero with a large inflow (an infusion into a drained compartment) drives
    # the estimate below the resolution of t late in long runs; start a little above it and
    # let the error test shrink the step if it must.
    min_step = 16.0 * eps * span
    h = min(max(h, 1000.0 * min_step), span)

    for i in range(d.shape[0]):
        for c in range(n):
            d[i, c] = 0.0
    for c in range(n):
        d[0, c] = y[c]
        d[1, c] = psi[c] * h
    order = 1
    n_equal = 0
    t = 0.0
    steps = 0
    if n_roots > 0:
        groot(a, y, p, roots[0])
    # the Jacobian: none yet in this segment (a dose changed the state), its age in
    # accepted steps, and the c of the factorisation in lu (0: none)
    have_jac = False
    jac_age = 0
    c_lu = 0.0
    rate_known = 1.0
    c_rate = 0.0
    sparse = False
    while t < span:
        if steps >= max_steps:
            y[:] = d[0]
            return TOO_MANY_STEPS, g, a + t
        if h < min_step:
            y[:] = d[0]
            return STEP_TOO_SMALL, g, a + t
        if t + h >= span or span - (t + h) < min_step:
            factor = (span - t) / h
            _rescale(d, order, factor, r, ru, tmp)
            h = span - t
            n_equal = 0
            t_new = span
        else:
            t_new = t + h
        for c in range(n):
            s = d[0, c]
            for i in range(1, order + 1):
                s += d[i, c]
            y_pred[c] = s
        inv_alpha = 1.0 / alpha[order]
        for c in range(n):
            s = 0.0
            for i in range(1, order + 1):
                s += gamma[i] * d[i, c]
            psi[c] = s * inv_alpha
        ch = h * inv_alpha

        converged = False
        n_iter = 0
        while True:
            fresh = False
            if not have_jac or jac_age >= JACOBIAN_MAX_AGE:
                jac(a + t_new, y_pred, p, jm)
                stats[2] += 1
                have_jac, jac_age, fresh, c_lu = True, 0, True, 0.0
            if ch != c_lu:
                # the straight-line LU of the sparsity pattern when its pivots pass the
                # threshold test, else dense LU with row exchanges
                sparse = sparse_factor(jm, ch, vals)
                if not sparse and not _newton_matrix(jm, ch, lu, piv):
                    c_lu = 0.0
                    break
                c_lu = ch
                # the corrector's contraction grows about in proportion to c: carry the
                # rate seen over to the new matrix, scaled up when c grew
                rate_known = min(1.0, rate_known * max(1.0, ch / c_rate)) if c_rate > 0.0 \
                    else 1.0
                c_rate = ch
            for c in range(n):
                y_new[c] = y_pred[c]
                corr[c] = 0.0
            norm_old = 0.0
            rate = 0.0
            n_iter = 0
            for k in range(NEWTON_MAXITER):
                n_iter = k + 1
                rhs(a + t_new, y_new, p, f)
                stats[1] += 1
                finite = True
                for i in range(n):
                    dy[i] = ch * (f[i] + u[i]) - psi[i] - corr[i]
                    if not math.isfinite(dy[i]):
                        finite = False
                if not finite:
                    break
                for block in range(blocks):
                    if sparse:
                        sparse_solve(vals, dy, block * nb)
                    else:
                        _lu_solve(lu, piv, dy[block * nb:(block + 1) * nb])
                norm = _rms(dy, weight)
                if k > 0:
                    rate = norm / norm_old
                    if rate >= 1.0 or rate ** (NEWTON_MAXITER - k) / (1.0 - rate) * norm \
                            > newton_tol:
                        break
                    rate_known = max(0.3 * rate_known, rate)
                for i in range(n):
                    y_new[i] += dy[i]
                    corr[i] += dy[i]
                # after one iteration the rate is not measured yet: use the last one seen
                # with this matrix (CVODE's crate, 1 after a new factorisation)
                if norm == 0.0 or (k == 0 and min(1.0, rate_known) * norm < newton_tol) or \
                        (k > 0 and rate / (1.0 - rate) * norm < newton_tol):
                    converged = True
                    break
                norm_old = norm
            if converged or fresh:
                break
            jac_age = JACOBIAN_MAX_AGE  # a stale Jacobian failed: evaluate it again, retry
        if not converged:
            _rescale(d, order, 0.5, r, ru, tmp)
            h *= 0.5
            n_equal = 0
            continue

        safety = 0.9 * (2 * NEWTON_MAXITER + 1) / (2 * NEWTON_MAXITER + n_iter)
        # the corrector converged in the weights of the last accepted point (CVODE's ewt,
        # set once per step); the error is measured in those of the new one
        _weights(y_new, rtol, atol, weight_new)
        err = _rms_times(corr, error_const[order], weight_new)
        if err > 1.0:
            factor = max(MIN_FACTOR, safety * err ** (-1.0 / (order + 1)))
            _rescale(d, order, factor, r, ru, tmp)
            h *= factor
            n_equal = 0
            continue

        # accepted: update the differences to the new point
        steps += 1
        stats[0] += 1
        jac_age += 1
        weight[:] = weight_new
        t = t_new
        n_equal += 1
        for c in range(n):
            d[order + 2, c] = corr[c] - d[order + 1, c]
            d[order + 1, c] = corr[c]
        for i in range(order, -1, -1):
            for c in range(n):
                d[i, c] += d[i + 1, c]
        if n_roots > 0:
            groot(a + t, d[0], p, roots[1])
            stop = -1.0
            for j in range(n_roots):
                before, after = roots[0, j], roots[1, j]
                if before != 0.0 and (after == 0.0 or (after > 0.0) != (before > 0.0)):
                    at = _crossing(groot, j, d, order, t, h, a, span, p, t - h, t, before,
                                   after, y_pred, roots[2])
                    if stop < 0.0 or at < stop:
                        stop = at
            if stop >= 0.0:
                while g < n_grid and grid[g] < b and grid[g] - a <= stop:
                    if grid[g] > a:
                        _interpolate(d, order, t, h, grid[g] - a, out[:, g])
                    g += 1
                _interpolate(d, order, t, h, stop, y)
                groot(a + stop, y, p, roots[1])
                return ROOT, g, a + stop
            for j in range(n_roots):
                roots[0, j] = roots[1, j]
        while g < n_grid and grid[g] < b and grid[g] - a <= t:
            if grid[g] > a:
                _interpolate(d, order, t, h, grid[g] - a, out[:, g])
            g += 1
        if n_equal < order + 1:
            continue
        # order and step selection after order+1 equal steps
        err_m = _rms_times(d[order], error_const[order - 1], weight) if order > 1 \
            else math.inf
        err_p = _rms_times(d[order + 2], error_const[order + 1], weight) \
            if order < MAX_ORDER else math.inf
        f_m = err_m ** (-1.0 / order) if err_m > 0.0 else MAX_FACTOR / safety
        f_0 = err ** (-1.0 / (order + 1)) if err > 0.0 else MAX_FACTOR / safety
        f_p = err_p ** (-1.0 / (order + 2)) if err_p > 0.0 else MAX_FACTOR / safety
        best = max(f_m, f_0, f_p)
        new_order = order
        if best == f_m and f_m > f_0:
            new_order = order - 1
        elif best == f_p and f_p > f_0:
            new_order = order + 1
        factor = min(MAX_FACTOR, safety * best)
        if new_order == order and 1.0 <= factor < MIN_GROWTH:
            continue  # keep h and order; test again after the next equal step
        order = new_order
        _rescale(d, order, factor, r, ru, tmp)
        h *= factor
        n_equal = 0
    y[:] = d[0]
    for i in range(n):
        if not math.isfinite(y[i]):
            return NOT_FINITE, g, a + t
    return OK, g, b


@_jit
def _crossing(groot, j, d, order, t, h, a, span, p, lo, hi, f_lo, f_hi, y_tmp, g_tmp):
    """Where root function ``j`` changes sign within the last step [lo, hi] (local times;
    the step ended at ``t`` with size ``h``), by the Illinois method on the step's
    interpolating polynomial.  Returns the right end of the final bracket: a time at which
    the function already has its new sign (so a trigger read there sees the comparison
    changed), within 100 ulps of the time."""
    tol = 100.0 * 2.220446049250313e-16 * (abs(a) + span)
    if f_hi == 0.0:
        return hi
    side = 0
    for _ in range(200):
        if hi - lo <= tol:
            break
        m = hi - f_hi * (hi - lo) / (f_hi - f_lo)
        if not (lo < m < hi):
            m = 0.5 * (lo + hi)
        _interpolate(d, order, t, h, m, y_tmp)
        groot(a + m, y_tmp, p, g_tmp)
        f_m = g_tmp[j]
        if f_m != 0.0 and (f_m > 0.0) == (f_hi > 0.0):
            hi, f_hi = m, f_m
            if side == -1:
                f_lo *= 0.5  # Illinois: the end that stays keeps half its weight
            side = -1
        else:
            # not yet across (a zero counts as not yet: the new sign is what is wanted)
            lo = m
            if f_m != 0.0:
                f_lo = f_m
            if side == 1:
                f_hi *= 0.5
            side = 1
    return hi


@_jit
def _run_one(rhs, jac, sparse_factor, sparse_solve,
             blocks, p, starts, ends, rates, jumps, grid, rtol,
             atol, y0, out, pre, stats, ws):
    """Integrate one run over its segments with workspace ``ws``.

    ``starts/ends``: segment edges (days); ``rates[s]``: infusion input on segment s;
    ``jumps[s]``: bolus added at its start; ``out``: (n_states, n_grid), filled;
    ``pre[s]``: the state just before segment s begins (before its bolus); ``stats``:
    [steps, rhs evaluations, jacobian evaluations, time reached].  Returns a status code.
    """
    y = y0.copy()
    g = 0
    n_grid = grid.shape[0]
    max_steps = 500_000
    for s in range(starts.shape[0]):
        a, b = starts[s], ends[s]
        pre[s] = y
        y += jumps[s]
        while g < n_grid and grid[g] <= a:
            if grid[g] == a:
                out[:, g] = y
            g += 1
        # no event functions: the RHS stands in for the root function, never called
        status, g, t = _segment(rhs, jac, sparse_factor, sparse_solve,
                                blocks, p, rates[s], a, b, y, grid,
                                g, out, rtol, atol, stats, max_steps, ws, rhs, 0, ws[6][0])
        stats[3] = t
        if status != OK:
            return status
    while g < n_grid:
        out[:, g] = y
        g += 1
    return OK


def _run_piece(rhs, jac, sparse_factor, sparse_solve, groot, blocks, size, n_roots, p, a, b,
               u, y, grid, out, rtol, atol, stats, roots):
    """Integrate one piece [a, b] with constant input ``u`` from ``y`` (overwritten with the
    state where it stopped), filling the output points ``a < grid[k] < b`` it passes, and
    stop early where one of the ``n_roots`` functions of ``groot`` changes sign (see
    :func:`_segment`; ``roots`` (3, n_roots) holds their values, row 1 at the stop).
    Returns (status, time reached): the engine of models with events, whose driver
    (:mod:`.events`) handles doses and event execution between pieces."""
    n = y.shape[0]
    ws = _workspace(n, n // blocks, size)
    status, _, t = _segment(rhs, jac, sparse_factor, sparse_solve, blocks, p, u, a, b, y,
                            grid, 0, out, rtol, atol, stats, 500_000, ws, groot, n_roots,
                            roots)
    return status, t


def _run_chunk(rhs, jac, sparse_factor, sparse_solve,
               blocks, size, params, offsets, starts, ends, rates,
               jumps, grid, rtol, atol, y0, out, pre, stats, status):
    """Integrate the runs of a chunk in one call, with one workspace; see
    :func:`chunk_runner`.

    Run i has parameters ``params[i]``, initial state ``y0[i]`` and the segments
    ``offsets[i]:offsets[i+1]`` of ``starts, ends, rates, jumps`` (and of ``pre``); it
    writes ``out[i]``, ``stats[i]`` and ``status[i]``.  A run that fails does not stop the
    others.  Every run computes exactly what it would in a chunk of its own.
    """
    n = y0.shape[1]
    ws = _workspace(n, n // blocks, size)
    for i in range(params.shape[0]):
        lo, hi = offsets[i], offsets[i + 1]
        status[i] = _run_one(rhs, jac, sparse_factor, sparse_solve,
                             blocks, params[i], starts[lo:hi],
                             ends[lo:hi], rates[lo:hi], jumps[lo:hi], grid, rtol, atol, y0[i],
                             out[i], pre[lo:hi], stats[i], ws)


if numba is not None:
    _run_chunk = numba.njit(_signatures()["chunk"], cache=True, nogil=True)(_run_chunk)
    _run_piece = numba.njit(_signatures()["piece"], cache=True, nogil=True)(_run_piece)
