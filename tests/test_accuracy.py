"""Numerical honesty: the warnings about negative states and mass-balance drift."""


import warnings

import numpy as np
import pytest

import mechsim
from mechsim import accuracy
from mechsim.compile import compile_model
from mechsim.errors import NumericalWarning

REGIMEN = "100 mg iv every 7 days x 3"


# ---- numerical honesty ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def cm():
    return compile_model(mechsim.load_model("one_compartment"))


def test_negative_excursion_beyond_tolerance_is_named(cm):
    n, atol = len(cm.state_names), np.full(len(cm.state_names), 1e-12)
    out = np.ones((n, 5))
    i = cm.state_names.index("C")
    out[i, 3] = -1e-3  # far below -(atol + rtol * peak) = -(1e-12 + 1e-8)
    with pytest.warns(NumericalWarning, match=r"state C went negative, down to -0\.001"):
        accuracy.warn_if_inaccurate(cm, out, {}, 1e-8, atol)


def test_negative_noise_within_tolerance_is_not_reported(cm):
    n, atol = len(cm.state_names), np.full(len(cm.state_names), 1e-12)
    out = np.ones((n, 5))
    out[0, 2] = -5e-9  # within rtol * peak = 1e-8
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        accuracy.warn_if_inaccurate(cm, out, {"C + E": 1e-7}, 1e-8, atol)


def test_conservation_drift_above_tolerance_is_named(cm):
    out = np.ones((len(cm.state_names), 3))
    atol = np.full(len(cm.state_names), 1e-12)
    with pytest.warns(NumericalWarning, match=r"conservation law C \+ E drifted by 0\.002"):
        accuracy.warn_if_inaccurate(cm, out, {"C + E": 2e-3}, 1e-8, atol)


def test_loose_tolerances_on_a_real_run_are_reported():
    """A run at rtol = 1e-2 on the cd38 model: whatever it reports must be true of the
    result it returns (independent check of each warning against the numbers)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = mechsim.simulate("cd38_myeloma", "10 mg/kg iv every 2 weeks x 4", until="8 weeks",
                               rtol=1e-2, atol=1e-3, method="LSODA")
    reported = [str(w.message) for w in caught if w.category is NumericalWarning]
    residual = res.diagnostics.max_conservation_residual
    assert (residual > 1000 * 1e-2) == any("drifted" in m for m in reported)
