"""One exception family for everything mechsim rejects.

Each class also inherits the builtin it refines, so ``except ValueError`` in user code keeps
working, and each pickles (they travel back from worker processes).  Messages are one line:
what is wrong, where (``file:line`` when it came from a file) and what was expected.
"""

from __future__ import annotations

__all__ = [
    "MechsimError",
    "MissingDependency",
    "NumericalWarning",
    "ParseError",
    "RegimenError",
    "SolverError",
    "UnitError",
    "UnitWarning",
    "ValidationError",
]


class MechsimError(Exception):
    """Base class of every error mechsim raises on purpose.

    Parameters
    ----------
    message
        What is wrong and what was expected.
    where
        ``"path:line"`` (or just a name) locating the problem, if known.
    """

    def __init__(self, message: str, where: str | None = None):
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)

    def __reduce__(self):
        return (type(self), (self.message, self.where))


class ParseError(MechsimError, ValueError):
    """A file or expression could not be read (syntax, forbidden construct, unknown name)."""


class UnitError(MechsimError, ValueError):
    """A quantity has the wrong dimension or an unknown unit."""


class ValidationError(MechsimError, ValueError):
    """A model, parameter set or option is inconsistent or impossible."""


class RegimenError(MechsimError, ValueError):
    """A dosing regimen cannot be read or cannot be applied to a model."""


class SolverError(MechsimError, RuntimeError):
    """The ODE solver failed; the message names the time, the states involved and a hint.

    Attributes
    ----------
    detail
        What failed, where and when (the message without the hint).
    hint
        What to try, or None.
    partial
        The :class:`~mechsim.solvers.Trajectory` computed before the failure, when the
        solver can give one (NaN after the time it reached); None otherwise.
    failures
        ``(method, detail)`` of every method tried on the run, in order.
    """

    def __init__(self, detail: str, where: str | None = None, *, hint: str | None = None,
                 partial=None, failures: tuple[tuple[str, str], ...] = ()):
        self.detail = detail
        self.hint = hint
        self.partial = partial
        self.failures = tuple(failures)
        super().__init__(f"{detail}; hint: {hint}" if hint else detail, where)

    def __reduce__(self):
        return (_solver_error, (self.detail, self.where, self.hint, self.partial,
                                self.failures))


def _solver_error(detail, where, hint, partial, failures) -> SolverError:
    """Rebuilds a SolverError after pickling (it travels back from worker processes)."""
    return SolverError(detail, where, hint=hint, partial=partial, failures=failures)


class UnitWarning(UserWarning):
    """A model loaded, but a unit in it could not be put the way a person would write it
    (a rule without a declared unit whose inferred unit stays compound)."""


class NumericalWarning(UserWarning):
    """A result was computed but is less accurate than asked: a state went negative beyond
    the tolerance, a conservation law drifted, or a fallback solver method was needed."""


class MissingDependency(MechsimError, ImportError):
    """An optional package a feature needs is not installed; the message gives the
    ``pip install`` command (see :func:`mechsim.optional.require`)."""
