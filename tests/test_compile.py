"""CompiledModel: analytic Jacobian, batched evaluation, pickling, conservation laws."""

import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from toy_models import TWO_CPT_TMDD, two_compartment_tmdd

import mechsim
from mechsim import compile_model, load_model


@pytest.fixture
def tmdd(write_model):
    return load_model(write_model(TWO_CPT_TMDD))


def test_open_tmdd_has_drug_mass_balance_law(tmdd):
    laws = [str(law) for law in compile_model(tmdd).conservation_laws]
    assert laws == ["V*C + V*RC + V2*Cp + eliminated"] or \
        sorted(laws[0].split(" + ")) == sorted(["V*C", "V*RC", "V2*Cp", "eliminated"])


@given(st.lists(st.floats(0.0, 50.0), min_size=5, max_size=5),
       st.floats(0.1, 10.0))
def test_analytic_jacobian_matches_finite_differences(tmdd_states, scale):
    model = two_compartment_tmdd()
    cm = compile_model(model)
    p = cm.parameter_vector(model.parameters_by_name) * scale
    y = np.array(tmdd_states)
    jac = cm.jacobian()(0.0, y, p)
    f = cm.rhs()
    numeric = np.empty_like(jac)
    for j in range(len(y)):
        h = 1e-6 * max(1.0, abs(y[j]))
        up, down = y.copy(), y.copy()
        up[j] += h
        down[j] -= h
        numeric[:, j] = (f(0.0, up, p) - f(0.0, down, p)) / (2 * h)
    np.testing.assert_allclose(jac, numeric, rtol=1e-5, atol=1e-6 * np.abs(jac).max())


def test_batched_rhs_and_jacobian_equal_one_at_a_time(tmdd):
    cm = compile_model(tmdd)
    rng = np.random.default_rng(1)
    p0 = cm.parameter_vector(tmdd.parameters_by_name)
    n_pop = 7
    P = p0[:, None] * rng.lognormal(0, 0.3, (len(p0), n_pop))
    Y = rng.uniform(0, 20, (len(cm.state_names), n_pop))
    F = cm.rhs("vector")(0.0, Y, P)
    J = cm.jacobian("vector")(0.0, Y, P)
    for k in range(n_pop):
        np.testing.assert_allclose(F[:, k], cm.rhs()(0.0, Y[:, k], P[:, k]), rtol=1e-13)
        np.testing.assert_allclose(J[:, :, k], cm.jacobian()(0.0, Y[:, k], P[:, k]),
                                   rtol=1e-13)


def test_compiled_model_pickles_and_simulates_identically(tmdd):
    cm = compile_model(tmdd)
    cm.rhs()  # generate before pickling: functions must not travel
    clone = pickle.loads(pickle.dumps(cm))
    assert clone.state_names == cm.state_names
    assert [str(x) for x in clone.conservation_laws] == [str(x) for x in cm.conservation_laws]
    p = cm.parameter_vector(tmdd.parameters_by_name)
    y = np.linspace(1, 5, len(cm.state_names))
    np.testing.assert_array_equal(clone.rhs()(0.0, y, p), cm.rhs()(0.0, y, p))


def test_model_and_errors_pickle(tmdd):
    assert pickle.loads(pickle.dumps(tmdd)) == tmdd
    err = mechsim.UnitError("bad unit", "m.toml:3")
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == "m.toml:3: bad unit" and isinstance(again, ValueError)


def test_models_differing_only_in_values_share_one_compilation(tmdd):
    other = tmdd.with_parameters({"CL": "0.4 L/day"})
    assert compile_model(other) is compile_model(tmdd)


def test_tmdd_simulation_closes_mass_balance(tmdd):
    res = mechsim.simulate(tmdd, "1000 nmol iv every 7 days x 3", until="28 day",
                           rtol=1e-10, atol=1e-12)
    assert res.diagnostics.max_conservation_residual < 1e-8
    assert (res["R"].magnitude >= -1e-9).all()


@pytest.mark.parametrize("name", mechsim.io.builtin_names("models"))
def test_jacobian_is_finite_at_the_initial_state_of_every_builtin_model(name):
    # sympy differentiates x**h as h*x**h/x: 0/0 at x = 0 (e.g. occupancy before a dose)
    model = mechsim.load_model(name)
    cm = compile_model(model)
    p = cm.parameter_vector(model.parameters_by_name)
    assert np.isfinite(cm.jacobian()(0.0, cm.initial_state(p), p)).all()
    assert np.isfinite(cm.jacobian("vector")(0.0, cm.initial_state(p)[:, None],
                                             p[:, None])).all()


def test_the_compile_cache_keeps_only_the_most_recent_models(write_model):
    from mechsim import compile as compile_module

    first = None
    for k in range(compile_module.CACHE_SIZE + 3):
        model = mechsim.load_model(write_model(
            f'[parameters]\nk{k} = "1 1/day"\n[species.x]\nunit = "nmol"\ninitial = "1 nmol"\n'
            f'[reactions.r]\nequation = "x ->"\nrate = "k{k}*x"\n', f"m{k}.toml"))
        compiled = compile_model(model)
        first = first or compiled
        assert compile_model(model) is compiled  # cached while recent
    assert len(compile_module._CACHE) <= compile_module.CACHE_SIZE
    assert first not in compile_module._CACHE.values()  # the oldest went first
