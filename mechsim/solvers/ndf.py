"""The compiled NDF engine as a registered method (the kernel is in :mod:`.ndf_kernel`)."""

from __future__ import annotations

import numpy as np

from ..errors import SolverError
from . import ndf_kernel
from .base import Problem, Solver, Trajectory, states_involved

__all__ = ["NDF"]


class NDF(Solver):
    """mechsim's variable-order NDF integrator, compiled with numba together with the
    model's RHS and Jacobian: a whole run is one call into machine code."""

    name = "NDF"
    requires = "numba"

    def available(self) -> bool:
        return ndf_kernel.available()

    def solve(self, problem: Problem) -> Trajectory:
        cm, grid = problem.compiled, problem.grid
        n = len(cm.state_names)
        starts, ends, rates, jumps, is_dose = problem.plan.segments(problem.until, n)
        # NaN until written: after a failure, what the engine did not reach stays NaN (never
        # memory left over from another run)
        out = np.full((n, len(grid)), np.nan)
        pre = np.full((len(starts), n), np.nan)
        stats = np.zeros(4)
        status = ndf_kernel.compiled_runner(cm)(
            problem.parameters, starts, ends, rates, jumps, grid, float(problem.rtol),
            problem.atol.astype(float), problem.initial.astype(float), out, pre, stats)
        if status == ndf_kernel.OK:
            return Trajectory(states=out, pre_dose_days=starts[is_dose],
                              pre_dose_states=pre[is_dose], steps=int(stats[0]),
                              rhs_evaluations=int(stats[1]),
                              jacobian_evaluations=int(stats[2]), method=self.name,
                              reached=problem.until)
        reached = float(stats[3])
        out[:, grid > reached] = np.nan
        seen = np.flatnonzero(grid <= reached)
        y_last = out[:, seen[-1]] if seen.size else problem.initial
        involved = states_involved(problem, np.zeros(n), y_last,
                                   float(grid[seen[-1]]) if seen.size else 0.0)
        # what was integrated before the failure, for callers that can use a partial run
        # (simulate_many(partial=True)); the rest of the grid is NaN
        done = is_dose & (starts <= reached)
        partial = Trajectory(states=out, pre_dose_days=starts[done], pre_dose_states=pre[done],
                             steps=0, rhs_evaluations=0, jacobian_evaluations=0,
                             method=self.name, reached=reached, complete=False)
        states = f"; states involved: {', '.join(involved)}" if involved else ""
        raise SolverError(f"solver NDF failed near t = {reached:g} day: "
                          f"{ndf_kernel.STATUS_TEXT[status]}; model {cm.name}{states}",
                          hint="check parameter values and units, loosen rtol/atol or try "
                               "method='Radau'", partial=partial)
