"""LSODA, BDF and Radau from scipy, integrating segment by segment between doses.

LSODA runs through ``odeint`` (ODEPACK: switches between stiff and non-stiff formulas);
BDF and Radau through ``solve_ivp``.  All three get the model's analytic Jacobian.  Each
segment between two breakpoints of the dose plan is one call, so no step crosses a dose.
"""

from __future__ import annotations

import warnings
from itertools import pairwise

import numpy as np

from ..errors import SolverError
from .base import Problem, Solver, Trajectory, states_involved
from .events import Stop, crossings, solve_with_events


def _event_roots(cm):
    """The scalar root functions of a model's events: ``(t, y, p) -> array``."""
    from ..codegen import generate

    return cm._fn("scalar-event-roots", lambda: generate(
        "roots", ("t", "y", "p"), {"y": cm.states, "p": cm.params},
        [((j,), g) for j, g in enumerate(cm.event_roots)], (len(cm.event_roots),), "scalar"))

__all__ = ["BDF", "LSODA", "Radau"]

_ODEINT_OK = "Integration successful."
_IVP_OK = "The solver successfully reached the end of the integration interval."


class _ScipyMethod(Solver):
    """Segment-by-segment integration with a scipy method (the contract's points 3-7)."""

    def solve(self, problem: Problem) -> Trajectory:
        if problem.compiled.events:
            return solve_with_events(problem, self._piece(problem), self.name)
        cm, plan, grid = problem.compiled, problem.plan, problem.grid
        n = len(cm.state_names)
        until = problem.until
        y = problem.initial
        rhs, jac = cm.rhs("scalar"), cm.jacobian("scalar")
        out = np.empty((n, len(grid)))
        bolus_at: dict[float, list[tuple[int, float]]] = {}
        for t, i, jump in plan.boluses:
            bolus_at.setdefault(t, []).append((i, jump))
        dose_times = plan.dose_times()
        pre_t, pre_y = [], []
        totals = np.zeros(3, dtype=int)
        for a, b in pairwise(plan.breakpoints(until)):
            if a in dose_times:  # keep the value just before each dose (troughs)
                pre_t.append(a)
                pre_y.append(y.copy())
            y = _apply_boluses(y, bolus_at.get(a, ()))
            u = plan.input_rate(a, n)
            mask = (grid >= a) & (grid < b)
            out[:, mask & (grid == a)] = y[:, None]
            inner = grid[mask & (grid > a)]
            values, counts = self._segment(problem, rhs, jac, u, y, a, b, inner)
            out[:, mask & (grid > a)] = values[:, :-1]
            y = values[:, -1]
            totals += counts
        out[:, grid == until] = y[:, None]
        return Trajectory(states=out, pre_dose_days=np.array(pre_t),
                          pre_dose_states=np.array(pre_y).reshape(len(pre_t), n),
                          steps=int(totals[0]), rhs_evaluations=int(totals[1]),
                          jacobian_evaluations=int(totals[2]), method=self.name,
                          reached=until)

    def _segment(self, problem, rhs, jac, u, y0, a, b, inner):
        """Integrate one smooth interval; returns states at ``inner`` and ``b`` and
        counters."""
        p = problem.parameters
        tout = np.concatenate([inner, [b]])
        if len(y0) == 0:  # a model with no state (rules of time only): nothing to integrate
            return np.empty((0, len(tout))), np.zeros(3, dtype=int)
        has_input = bool(np.any(u))

        def f(t, y):
            dy = rhs(t, y, p)
            return dy + u if has_input else dy

        def j(t, y):
            return jac(t, y, p)

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values, counts, message, ok = self._integrate(f, j, y0, a, b, tout, problem)
        except (ZeroDivisionError, OverflowError, ValueError, FloatingPointError) as exc:
            raise SolverError(f"the model could not be evaluated between t = {a:g} and {b:g} "
                              f"day ({type(exc).__name__}: {exc}); a state or parameter "
                              "probably reached zero or a negative value; check parameter "
                              "values") from None
        if not ok or not np.all(np.isfinite(values)):
            raise self._error(problem, u, y0, values, tout, a, b, message)
        return values, np.array(counts, dtype=int)

    def _integrate(self, f, j, y0, a, b, tout, problem):  # pragma: no cover - abstract
        raise NotImplementedError

    def _piece(self, problem: Problem):
        """The piece integrator of :func:`.events.solve_with_events`: scipy's solve_ivp with
        the events' root functions as terminal events (LSODA too: odeint has none)."""
        from scipy.integrate import solve_ivp

        cm = problem.compiled
        rhs, jac = cm.rhs("scalar"), cm.jacobian("scalar")
        roots = _event_roots(cm)
        n_roots = len(cm.event_roots)

        def piece(a, b, y, u, p, times, out, columns):
            n = len(y)
            if n == 0:  # no state: scipy needs one, so integrate a constant placeholder
                y = np.zeros(1)

            def f(t, y):
                return rhs(t, y[:n], p) + u if n else np.zeros(1)

            def j(t, y):
                return jac(t, y, p) if n else np.zeros((1, 1))

            g_start = np.array(roots(a, y[:n], p), dtype=float) if n_roots else np.empty(0)
            # A root function that is exactly 0 where the piece starts (x < K with x = K at
            # t = 0) would be "found" again at the start by solve_ivp, over and over: it
            # counts from the side it moves to, read a small Euler step ahead
            # (one that stays exactly 0, a state at rest on its threshold, is not watched
            # in this piece: it would stop the piece at every step)
            watched = list(range(n_roots))
            if np.any(g_start == 0.0):
                h = 1e-9 * max(1.0, abs(b - a))
                ahead = np.array(roots(a + h, (y + h * f(a, y))[:n], p), dtype=float)
                side = np.where(ahead < 0.0, -1.0, 1.0)
                watched = [k for k in watched if g_start[k] != 0.0 or ahead[k] != 0.0]
                g_start = np.where(g_start == 0.0, side * 1e-300, g_start)

            def watch(k):
                def g(t, y):
                    if t == a:
                        return g_start[k]
                    return roots(t, y[:n], p)[k]
                g.terminal = True
                return g

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sol = solve_ivp(f, (a, b), y, method=self.name, t_eval=times,
                                jac=None if self.name == "LSODA" else j,
                                events=[watch(k) for k in watched] or None,
                                dense_output=True, rtol=problem.rtol,
                                atol=problem.atol if n else 1.0)
            counts = (len(sol.t), sol.nfev, sol.njev)
            if sol.status < 0 or not np.all(np.isfinite(sol.y)):
                raise self._error(problem, u, y, np.asarray(sol.y).reshape(len(y), -1),
                                  np.asarray(sol.t), a, b, sol.message)
            done = len(sol.t)
            out[:, columns[:done]] = sol.y[:n]

            def state(t):
                return np.asarray(sol.sol(t), dtype=float)[:n]

            if sol.status != 1:
                return Stop(b, state(b), {}, counts)
            # a terminal event: step just past the located root, so that the function has
            # its new sign there (as the compiled engine's stop does)
            at = min(float(te[0]) for te in sol.t_events if len(te))

            def stop(time, y_stop, crossed):
                # output times up to the stop that t_eval left out (one at the root
                # itself, which the next piece, starting just after it, would skip)
                for k in range(done, len(times)):
                    if times[k] <= time:
                        out[:, columns[k]] = state(min(times[k], at))
                return Stop(time, y_stop, crossed, counts)

            # as close as the sign allows: a delayed event counts from this time
            for scale in (4e-16, 1e-14, 1e-12, 1e-10, 1e-8):
                after = at + scale * max(1.0, abs(at))
                y_after = state(after)
                g_after = np.asarray(roots(after, y_after, p), dtype=float)
                crossed = crossings(g_start, g_after)
                # a function that is exactly 0 there has not taken its new sign yet: the
                # trigger would read false again right after the event
                if crossed and all(g_after[j] != 0.0 for j in crossed):
                    return stop(after, y_after, crossed)
            return stop(at, state(at), {})
        return piece

    def _error(self, problem, u, y0, values, tout, a, b, message) -> SolverError:
        finite = np.all(np.isfinite(values), axis=0)
        last = int(np.argmin(finite)) - 1 if not finite.all() else values.shape[1] - 1
        y = values[:, last] if last >= 0 else y0
        t = tout[last] if last >= 0 else a
        bad = states_involved(problem, u, y, t)
        if message.strip() in (_ODEINT_OK, _IVP_OK):
            message = "the solution became NaN or infinite"
        other = "Radau" if self.name != "Radau" else "LSODA"
        return SolverError(f"solver failed near t = {t:g} day (segment {a:g}..{b:g} day): "
                           f"{message.strip()}; states involved: {', '.join(bad)}",
                           hint=f"check parameter values and units, loosen rtol/atol or try "
                                f"method='{other}'")


class LSODA(_ScipyMethod):
    """ODEPACK's LSODA through ``scipy.integrate.odeint``."""

    name = "LSODA"

    def _integrate(self, f, j, y0, a, b, tout, problem):
        from scipy.integrate import odeint  # 50 MB and 0.2 s: only when a run uses it

        sol, info = odeint(f, y0, np.concatenate([[a], tout]), Dfun=j, tfirst=True,
                           rtol=problem.rtol, atol=problem.atol, tcrit=[b], mxstep=100_000,
                           full_output=True)
        ok = info["message"] == _ODEINT_OK
        values = sol[1:].T
        if not ok:
            # rows past the failure are garbage: keep those the solver got beyond
            reached = np.asarray(info["tcur"], dtype=float)
            good = np.cumprod(np.isfinite(reached) & (reached >= tout)).astype(bool)
            values = np.where(good[None, :], values, np.nan)
        counts = (info["nst"][-1], info["nfe"][-1], info["nje"][-1])
        return values, counts, info["message"], ok


class _IVPMethod(_ScipyMethod):
    def _integrate(self, f, j, y0, a, b, tout, problem):
        from scipy.integrate import solve_ivp

        sol = solve_ivp(f, (a, b), y0, method=self.name, t_eval=tout, jac=j, rtol=problem.rtol,
                        atol=problem.atol)
        # a failed solve_ivp may return fewer columns than asked, or none at all
        values = np.asarray(sol.y, dtype=float).reshape(len(y0), -1)
        ok = sol.status == 0 and values.shape[1] == len(tout)
        return values, (len(sol.t), sol.nfev, sol.njev), sol.message, ok


class BDF(_IVPMethod):
    """scipy's variable-order BDF (``solve_ivp(method="BDF")``)."""

    name = "BDF"


class Radau(_IVPMethod):
    """scipy's implicit Runge-Kutta Radau IIA of order 5 (``solve_ivp(method="Radau")``)."""

    name = "Radau"


def _apply_boluses(y, jumps):
    if not jumps:
        return y
    y = y.copy()
    for i, jump in jumps:
        y[i] += jump
    return y
