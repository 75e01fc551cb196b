"""The solver contract (mechsim/solvers/__init__.py), checked for every registered method on
problems with closed-form answers, and the registry's own rules."""

import pickle

import numpy as np
import pytest

import mechsim
from mechsim import SolverError, ValidationError, solvers
from mechsim.runspec import RunSpec
from mechsim.testing import bolus_1cpt, superpose

METHODS = [m for m in solvers.methods() if solvers._REGISTRY[m].available()]


V, K = 10.0, np.log(2)  # one_compartment defaults: L, 1/day


def problem(regimen="1000 nmol iv every 2 days x 3", until="7 day", every="0.5 day"):
    spec = RunSpec.build("one_compartment", regimen, until=until, every=every, rtol=1e-10,
                         atol=1e-14)
    plan = spec.plan()
    grid = spec.grid(plan.breakpoints(spec.until))
    return spec, plan, spec.problem(spec.parameters, plan, grid)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_meets_the_contract_on_repeated_boluses(method):
    spec, _plan, prob = problem()
    got = solvers._REGISTRY[method].solve(prob)
    assert got.method == method and got.complete and got.reached == 7.0
    # points 3 and 4: right-continuous values, exact jumps, the state before each dose kept
    i = spec.compiled.index("C")
    expected = superpose(lambda s: bolus_1cpt(s, 1000, V, K), [0.0, 2.0, 4.0], prob.grid)
    np.testing.assert_allclose(got.states[i], expected, rtol=1e-7)
    np.testing.assert_array_equal(got.pre_dose_days, [0.0, 2.0, 4.0])
    at_doses = np.searchsorted(prob.grid, [2.0, 4.0])
    np.testing.assert_allclose(got.states[i, at_doses] - got.pre_dose_states[1:, i],
                               1000 / V, rtol=1e-9)
    # point 7: counters, and the same numbers on a second call (no shared state)
    assert got.steps > 0 and got.rhs_evaluations >= got.steps
    again = solvers._REGISTRY[method].solve(prob)
    np.testing.assert_array_equal(again.states, got.states)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_steps_around_infusion_edges(method):
    _spec, _plan, prob = problem("1000 nmol iv over 12 h every 2 days x 2", until="5 day",
                               every="0.25 day")
    got = solvers._REGISTRY[method].solve(prob)
    reference = solvers._REGISTRY["Radau"].solve(prob)
    np.testing.assert_allclose(got.states, reference.states, rtol=1e-6, atol=1e-12)


def test_unknown_and_unavailable_methods_are_one_error(monkeypatch):
    with pytest.raises(ValidationError, match="unknown method 'Euler' .*auto, NDF, LSODA"):
        solvers.choose_method("Euler")
    from mechsim.solvers import ndf_kernel
    monkeypatch.setattr(ndf_kernel, "numba", None)
    assert solvers.choose_method("auto") == "LSODA"


def test_a_solver_error_pickles_with_its_partial_run():
    cm_problem = problem()[2]
    partial = solvers._REGISTRY["LSODA"].solve(cm_problem)
    error = SolverError("stopped", hint="try Radau", partial=partial,
                        failures=(("NDF", "stopped"),))
    back = pickle.loads(pickle.dumps(error))
    assert str(back) == "stopped; hint: try Radau" and back.hint == "try Radau"
    assert back.failures == (("NDF", "stopped"),)
    np.testing.assert_array_equal(back.partial.states, partial.states)


def test_a_registered_method_is_used_by_simulate(monkeypatch):
    """Adding a method is one class and its registration: simulate finds it by name."""
    class Scaled(solvers.Solver):
        name = "LSODA-copy"

        def solve(self, problem):
            from dataclasses import replace
            return replace(solvers._REGISTRY["LSODA"].solve(problem), method=self.name)

    monkeypatch.setitem(solvers._REGISTRY, "LSODA-copy", Scaled())
    monkeypatch.setitem(solvers._FALLBACK, "LSODA-copy", ("Radau",))
    res = mechsim.simulate("one_compartment", "1 mg iv", until="1 day", method="LSODA-copy")
    assert res.diagnostics.method == "LSODA-copy"
