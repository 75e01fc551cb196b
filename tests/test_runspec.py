"""The run specification: every option checked once, in canonical numbers."""

import numpy as np
import pytest

import mechsim
from mechsim import RegimenError, UnitError, ValidationError
from mechsim.runspec import MAX_OUTPUT_POINTS, RunSpec, output_grid


def test_build_keeps_canonical_numbers_and_the_users_choices():
    spec = RunSpec.build("one_compartment", "100 mg iv every 12 h x 2", until="2 day",
                         every="6 h", params="one_compartment_typical",
                         overrides={"V": "5000 mL"}, rtol=1e-9, atol=1e-13)
    assert spec.until == 2.0 and spec.every == 0.25 and spec.times is None
    assert spec.model.parameters_by_name["V"].value.to("L").magnitude == 5.0
    v = spec.compiled.parameter_names.index("V")
    assert spec.parameters[v] == 5.0 and not spec.parameters.flags.writeable
    assert spec.rtol == 1e-9 and np.all(spec.atol == 1e-13) and spec.atol_given == 1e-13
    assert spec.method in mechsim.solvers.methods()
    np.testing.assert_array_equal(spec.grid(spec.plan().breakpoints(2.0)),
                                  np.arange(0, 2.01, 0.25))


def test_default_atol_is_1e_minus_12_of_each_states_own_unit():
    spec = RunSpec.build("cd40_apc", until="1 day")
    i = spec.compiled.state_names.index("IL6")  # pg/mL = 1e-9 g/L
    assert spec.atol[i] == pytest.approx(1e-21) and spec.atol_given is None


@pytest.mark.parametrize("kwargs, error, fragment", [
    ({"until": "0 day"}, ValidationError, "`until` must be after 0"),
    ({"until": "3 mg"}, UnitError, "`until` must be a time"),
    ({"until": "1 day", "every": "0 h"}, ValidationError, "`every` must be positive"),
    ({"until": "100 years", "every": "1 s"}, ValidationError, "output points"),
    ({"until": "1 day", "every": "1 h", "times": ["1 h"]}, ValidationError, "not both"),
    ({"until": "1 day", "rtol": 0}, ValidationError, "`rtol` must be a positive number"),
    ({"until": "1 day", "atol": [1e-12, 1e-12]}, ValidationError, "one value or 3"),
    ({"until": "1 day", "method": "Euler"}, ValidationError, "unknown method"),
    ({"until": "1 day", "overrides": {"CLX": "1 L/day"}}, ValidationError, "'CLX'"),
])
def test_every_option_is_checked_before_any_run(kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        RunSpec.build("one_compartment", **kwargs)


def test_a_regimen_that_does_not_fit_the_model_fails_when_planned():
    spec = RunSpec.build("one_compartment", "1 mg/kg iv", until="1 day")
    with pytest.raises(RegimenError, match="body weight"):
        spec.plan()


def test_output_grid_snaps_times_a_rounding_error_from_a_dose():
    breaks = np.array([0.0, 63.0, 100.0])
    grid = output_grid(breaks, 100.0, np.array([0.0, 63.00000000000001, 100.0]))
    assert 63.0 in grid and grid.size == 3
    assert MAX_OUTPUT_POINTS == 1_000_000
