"""ODE solvers: a registry of methods behind one contract, and the fallback between them.

Every run of mechsim is integrated by a method registered here; nothing else in the package
compares method names.  A new method is added by writing a :class:`Solver` in a module of
this package and registering it (see ``scipy_methods.py`` and ``ndf.py``).

The contract a method implements
--------------------------------
1. ``name``: the text users pass as ``method=``; ``stiff``: whether it is a stiff method
   (only stiff methods are used as fallbacks); ``requires``: the optional package it
   needs (a key of :data:`mechsim.optional.EXTRAS`) or None.
2. ``solve(problem)`` integrates one :class:`Problem` over ``[0, problem.grid[-1]]`` and
   returns a :class:`Trajectory`.
3. It never steps across a breakpoint of ``problem.plan`` (doses, infusion starts and
   ends): each segment between breakpoints is integrated on its own, from the state at its
   start, with the plan's constant infusion input added to the right-hand side.
4. A bolus is an exact jump applied at the start of its segment.  Values are
   right-continuous: the value at a dose time includes the dose; the state just before each
   dose (bolus or infusion start) is recorded in ``pre_dose_states``.
5. Tolerances are ``problem.rtol`` and the per-state ``problem.atol`` (canonical units),
   in the weighted RMS norm ``sqrt(mean((err / (atol + rtol |y|))**2))``.
6. On failure it raises :class:`~mechsim.errors.SolverError` whose ``detail`` names the
   time reached and the states involved (:func:`states_involved`), and, when it can, whose
   ``partial`` is the Trajectory up to the time it reached (NaN after).  It raises nothing
   else for a run that fails numerically.
7. It returns counters (steps, right-hand-side and Jacobian evaluations) summed over the
   segments, and the same numbers whatever else runs in the process (no shared state),
   so that runs give identical results on any number of threads or processes.

Registration: ``register(Solver(), fallback=("Radau", "LSODA"))``; ``fallback`` lists the
methods tried, in order, when this one fails on a run (same tolerances, so the answer is
as accurate either way).
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import SolverError, ValidationError
from ..optional import require
from .base import Problem, Solver, Trajectory, states_involved
from .ndf import NDF
from .scipy_methods import BDF, LSODA, Radau

__all__ = ["DEFAULT_METHOD", "Problem", "Solver", "Trajectory", "choose_method", "methods",
           "register", "solve", "states_involved"]

#: The method every function uses unless told otherwise: the compiled NDF engine when
#: numba is installed, else LSODA.
DEFAULT_METHOD = "auto"


_REGISTRY: dict[str, Solver] = {}
_FALLBACK: dict[str, tuple[str, ...]] = {}


def register(solver: Solver, *, fallback: tuple[str, ...] = ()) -> Solver:
    """Make ``solver`` available as ``method=solver.name``."""
    _REGISTRY[solver.name] = solver
    _FALLBACK[solver.name] = tuple(fallback)
    return solver


def methods() -> tuple[str, ...]:
    """Names of the registered methods."""
    return tuple(_REGISTRY)


def choose_method(method: str) -> str:
    """The registered method a ``method=`` argument names (``"auto"``: NDF when numba is
    installed, else LSODA); an unknown name or a missing optional package is one error."""
    if method == "auto":
        return "NDF" if _REGISTRY["NDF"].available() else "LSODA"
    solver = _REGISTRY.get(method) if isinstance(method, str) else None
    if solver is None:
        raise ValidationError(f"unknown method {method!r} (choose from auto, "
                              f"{', '.join(_REGISTRY)})")
    if not solver.available():
        require(solver.requires, f"method {method!r} (the compiled engine)"
                if method == "NDF" else f"method {method!r}")
    return method


def solve(problem: Problem, method: str) -> Trajectory:
    """Integrate ``problem`` with ``method``, then with its fallbacks until one finishes.

    The Trajectory says which method finished (``method``) and which failed before
    (``failed_methods``).  If every method fails, the SolverError describes the first
    failure, names the others, carries the first method's partial trajectory (if any) and
    lists every failure in ``failures``.
    """
    failed: list[tuple[str, str]] = []
    errors: list[SolverError] = []
    for attempt in (method, *_FALLBACK[method]):
        solver = _REGISTRY[attempt]
        if attempt != method and not solver.available():
            continue
        try:
            trajectory = solver.solve(problem)
        except SolverError as exc:
            failed.append((attempt, exc.detail))
            errors.append(exc)
            continue
        if failed:
            return _with_failures(trajectory, tuple(failed))
        return trajectory
    first = errors[0]
    if len(errors) == 1:
        raise SolverError(first.detail, hint=first.hint, partial=first.partial,
                          failures=tuple(failed))
    others = " and ".join(m for m, _ in failed[1:])
    raise SolverError(f"{first.detail}; {others} failed too",
                      hint="every stiff method fails here, so look at the model and its "
                           "values: a state growing without bound, a parameter far out of "
                           "range or in the wrong unit",
                      partial=first.partial, failures=tuple(failed))


def _with_failures(trajectory: Trajectory, failed) -> Trajectory:
    return replace(trajectory, failed_methods=failed)


# The shipped methods.  Fallbacks: Radau (implicit Runge-Kutta, L-stable, its own step
# control) passes extreme stiffness where the BDF-family methods give up, e.g. a receptor
# pool grown a millionfold binding drug within seconds; LSODA is the last resort.
register(NDF(), fallback=("Radau", "LSODA"))
register(LSODA(), fallback=("Radau",))
register(BDF(), fallback=("Radau", "LSODA"))
register(Radau(), fallback=("LSODA",))
