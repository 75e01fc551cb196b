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
Jacobian, evaluated and factorised at every step (measured: for the 12-state CD38 model an
evaluation takes 0.2 µs and keeping it between steps costs more corrector iterations than
it saves);
the local error is measured in the weighted RMS norm ``sqrt(mean((err/(atol + rtol|y|))**2))``,
the norm CVODE uses.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ..codegen import generate

__all__ = ["STATUS_TEXT", "available", "compiled_runner"]

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

OK, TOO_MANY_STEPS, STEP_TOO_SMALL, NOT_FINITE = 0, 1, 2, 3
STATUS_TEXT = {
    TOO_MANY_STEPS: "too many steps",
    STEP_TOO_SMALL: "the step size fell below the resolution of t (the corrector did not "
                    "converge or the error test kept failing)",
    NOT_FINITE: "the model returned NaN or infinity",
}


def available() -> bool:
    """True when numba is installed and the compiled engine can be used."""
    return numba is not None


def compiled_runner(cm):
    """``run(p, starts, ends, rates, jumps, grid, rtol, atol, y0, out, pre, stats)`` for a
    compiled model, compiled on first use and cached on the model (see :func:`_run`)."""
    def build():
        # explicit signatures make these first-class functions, so the integrator is
        # compiled once (and cached on disk) for every model instead of once per model
        sig = _signatures()
        rhs = numba.njit(sig["rhs"], error_model="numpy")(_model_function(cm, "rhs"))
        jac = numba.njit(sig["jac"], error_model="numpy")(_model_function(cm, "jac"))
        return functools.partial(_run, rhs, jac, cm.jacobian_blocks)
    return cm._fn("numba-runner", build)


def _signatures() -> dict:
    from numba import types

    vec, mat = types.float64[::1], types.float64[:, ::1]
    rhs = vec(types.float64, vec, vec)
    jac = mat(types.float64, vec, vec)
    run = types.int64(types.FunctionType(rhs), types.FunctionType(jac), types.int64, vec, vec,
                      vec, mat, mat, vec, types.float64, vec, vec, mat, mat, vec)
    return {"rhs": rhs, "jac": jac, "run": run}


def _model_function(cm, which: str):
    symbols = {"y": cm.states, "p": cm.params}
    n = len(cm.states)
    if which == "rhs":
        outputs, shape = [((i,), e) for i, e in enumerate(cm.rhs_exprs)], (n,)
    else:  # one diagonal block when the Jacobian is block diagonal (jacobian_blocks)
        block = n // cm.jacobian_blocks
        outputs, shape = [((i, j), e) for i, j, e in cm.jac_entries], (block, block)
    return generate(which, ("t", "y", "p"), symbols, outputs, shape, "numba",
                    helpers=_helpers())


_HELPER_CACHE: dict = {}


def _helpers() -> dict:
    if not _HELPER_CACHE:
        _HELPER_CACHE.update({
            "_pow": _nb_pow, "_log": _nb_log, "_sqrt": _nb_sqrt, "_exp": _nb_exp,
            "_abs": abs, "_sign": np.sign, "_zeros": np.zeros,
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
    return x ** e


@_jit
def _nb_log(x):
    if x > 0.0:
        return math.log(x)
    return -math.inf if x == 0.0 else math.nan


@_jit
def _nb_sqrt(x):
    return math.sqrt(x) if x >= 0.0 else math.nan


@_jit
def _nb_exp(x):
    return math.exp(x) if x < 709.0 else math.inf


@_jit
def _rms(x, scale):
    s = 0.0
    for i in range(x.shape[0]):
        r = x[i] / scale[i]
        s += r * r
    return math.sqrt(s / x.shape[0])


@_jit
def _lu_factor(a, piv):
    """In-place LU with partial pivoting; False if the matrix is singular."""
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
            if f != 0.0:
                for j in range(k + 1, n):
                    a[i, j] -= f * a[k, j]
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
        b[i] = s / a[i, i]


@_jit
def _rescale(d, order, factor):
    """Rescale the backward differences ``d[:order+1]`` from step h to ``factor*h``.

    The differences of the interpolating polynomial at the new spacing are a linear map of
    the old ones: D_new = (R(factor) U)^T D_old with R_ij = prod_{m<=i} (m - 1 - factor j)/m.
    """
    k = order + 1
    r = np.ones((k, k))
    u = np.ones((k, k))
    for i in range(1, k):
        r[i, 0] = 0.0
        u[i, 0] = 0.0
        for j in range(1, k):
            r[i, j] = r[i - 1, j] * (i - 1 - factor * j) / i
            u[i, j] = u[i - 1, j] * (i - 1 - j) / i
    ru = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            for m in range(k):
                ru[i, j] += r[i, m] * u[m, j]
    new = np.zeros((k, d.shape[1]))
    for j in range(k):
        for i in range(k):
            new[j] += ru[i, j] * d[i]
    d[:k] = new


@_jit
def _interpolate(d, order, t, h, at, dest):
    """Value at ``at`` of the polynomial through the last ``order+1`` points (t, t-h, ...)."""
    dest[:] = d[0]
    prod = 1.0
    for j in range(order):
        prod *= (at - (t - j * h)) / ((j + 1) * h)
        dest += d[j + 1] * prod


@_jit
def _segment(rhs, jac, blocks, p, u, a, b, y, grid, g, out, rtol, atol, stats, max_steps):
    """Integrate from ``a`` to ``b`` starting at ``y`` (overwritten with y(b)).

    Output points ``a < grid[g..] < b`` are filled by interpolation.  Returns (status, g, t).
    With ``blocks`` > 1 the Newton matrix is block diagonal with that many copies of the
    block ``jac`` returns (the simultaneous corrector of sensitivity equations, as in
    CVODES): one factorisation of the small block serves them all.
    """
    # Time runs locally from 0 to span = b - a: the step-size floor is then set by the
    # segment's length, not by the size of t (late in a long run a fast transient after a
    # dose needs steps finer than the spacing of floats near t = 600 days).
    span = b - a
    n = y.shape[0]
    gamma, alpha, error_const = _GAMMA, _ALPHA, _ERROR_CONST
    eps = 2.220446049250313e-16
    newton_tol = max(10.0 * eps / rtol, min(0.03, math.sqrt(rtol)))
    n_grid = grid.shape[0]

    # initial step (Hairer, Norsett & Wanner, Solving ODEs I, II.4), for order 1
    f0 = rhs(a, y, p) + u
    stats[1] += 1
    scale = atol + rtol * np.abs(y)
    d0, d1 = _rms(y, scale), _rms(f0, scale)
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    h0 = min(h0, span)
    f1 = rhs(a + h0, y + h0 * f0, p) + u
    stats[1] += 1
    d2 = _rms(f1 - f0, scale) / h0
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

    d = np.zeros((MAX_ORDER + 3, n))
    d[0] = y
    d[1] = f0 * h
    order = 1
    n_equal = 0
    t = 0.0
    nb = n // blocks
    lu = np.empty((nb, nb))
    piv = np.empty(nb, dtype=np.int64)
    y_pred = np.empty(n)
    psi = np.empty(n)
    y_new = np.empty(n)
    corr = np.empty(n)
    dy = np.empty(n)
    steps = 0
    while t < span:
        if steps >= max_steps:
            y[:] = d[0]
            return TOO_MANY_STEPS, g, a + t
        if h < min_step:
            y[:] = d[0]
            return STEP_TOO_SMALL, g, a + t
        if t + h >= span or span - (t + h) < min_step:
            factor = (span - t) / h
            _rescale(d, order, factor)
            h = span - t
            n_equal = 0
            t_new = span
        else:
            t_new = t + h
        y_pred[:] = d[0]
        for i in range(1, order + 1):
            y_pred += d[i]
        scale = atol + rtol * np.abs(y_pred)
        psi[:] = 0.0
        for i in range(1, order + 1):
            psi += gamma[i] * d[i]
        psi /= alpha[order]
        c = h / alpha[order]

        jm = jac(a + t_new, y_pred, p)
        stats[2] += 1
        for i in range(nb):
            for j in range(nb):
                lu[i, j] = -c * jm[i, j]
            lu[i, i] += 1.0
        converged = False
        n_iter = 0
        if _lu_factor(lu, piv):
            y_new[:] = y_pred
            corr[:] = 0.0
            norm_old = 0.0
            rate = 0.0
            for k in range(NEWTON_MAXITER):
                n_iter = k + 1
                f = rhs(a + t_new, y_new, p)
                stats[1] += 1
                finite = True
                for i in range(n):
                    dy[i] = c * (f[i] + u[i]) - psi[i] - corr[i]
                    if not math.isfinite(dy[i]):
                        finite = False
                if not finite:
                    break
                for block in range(blocks):
                    _lu_solve(lu, piv, dy[block * nb:(block + 1) * nb])
                norm = _rms(dy, scale)
                if k > 0:
                    rate = norm / norm_old
                    if rate >= 1.0 or rate ** (NEWTON_MAXITER - k) / (1.0 - rate) * norm \
                            > newton_tol:
                        break
                y_new += dy
                corr += dy
                if norm == 0.0 or (k > 0 and rate / (1.0 - rate) * norm < newton_tol):
                    converged = True
                    break
                norm_old = norm
        if not converged:
            _rescale(d, order, 0.5)
            h *= 0.5
            n_equal = 0
            continue

        safety = 0.9 * (2 * NEWTON_MAXITER + 1) / (2 * NEWTON_MAXITER + n_iter)
        scale = atol + rtol * np.abs(y_new)
        err = _rms(error_const[order] * corr, scale)
        if err > 1.0:
            factor = max(MIN_FACTOR, safety * err ** (-1.0 / (order + 1)))
            _rescale(d, order, factor)
            h *= factor
            n_equal = 0
            continue

        # accepted: update the differences to the new point
        steps += 1
        stats[0] += 1
        t = t_new
        n_equal += 1
        d[order + 2] = corr - d[order + 1]
        d[order + 1] = corr
        for i in range(order, -1, -1):
            d[i] += d[i + 1]
        while g < n_grid and grid[g] < b and grid[g] - a <= t:
            if grid[g] > a:
                _interpolate(d, order, t, h, grid[g] - a, out[:, g])
            g += 1
        if n_equal < order + 1:
            continue
        # order and step selection after order+1 equal steps
        err_m = _rms(error_const[order - 1] * d[order], scale) if order > 1 else math.inf
        err_p = _rms(error_const[order + 1] * d[order + 2], scale) \
            if order < MAX_ORDER else math.inf
        f_m = err_m ** (-1.0 / order) if err_m > 0.0 else MAX_FACTOR / safety
        f_0 = err ** (-1.0 / (order + 1)) if err > 0.0 else MAX_FACTOR / safety
        f_p = err_p ** (-1.0 / (order + 2)) if err_p > 0.0 else MAX_FACTOR / safety
        best = max(f_m, f_0, f_p)
        if best == f_m and f_m > f_0:
            order -= 1
        elif best == f_p and f_p > f_0:
            order += 1
        factor = min(MAX_FACTOR, safety * best)
        _rescale(d, order, factor)
        h *= factor
        n_equal = 0
    y[:] = d[0]
    for i in range(n):
        if not math.isfinite(y[i]):
            return NOT_FINITE, g, a + t
    return OK, g, b


def _run(rhs, jac, blocks, p, starts, ends, rates, jumps, grid, rtol, atol, y0, out, pre,
         stats):
    """Integrate one run over its segments; see :func:`compiled_runner`.

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
        status, g, t = _segment(rhs, jac, blocks, p, rates[s], a, b, y, grid, g, out, rtol,
                                atol, stats, max_steps)
        stats[3] = t
        if status != OK:
            return status
    while g < n_grid:
        out[:, g] = y
        g += 1
    return OK


if numba is not None:
    _run = numba.njit(_signatures()["run"], cache=True, nogil=True)(_run)
