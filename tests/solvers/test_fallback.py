"""Fallback between stiff methods: a failed method is replaced and reported."""


import warnings

import numpy as np
import pytest

import mechsim
from mechsim import SolverError
from mechsim.errors import NumericalWarning
from mechsim.solvers.ndf import NDF

REGIMEN = "100 mg iv every 7 days x 3"


# ---- fallback between stiff methods --------------------------------------------------------

def test_simulate_falls_back_to_another_stiff_method_and_says_so(monkeypatch):
    """NDF failing (injected) on a run gives the Radau result, a NumericalWarning and the
    failure in the diagnostics; the values agree with a direct Radau run."""
    pytest.importorskip("numba")

    def failing(self, problem):
        raise SolverError("injected failure; hint: none")

    monkeypatch.setattr(NDF, "solve", failing)
    with pytest.warns(NumericalWarning, match=r"solver NDF failed \(injected failure\).*Radau"):
        got = mechsim.simulate("one_compartment", REGIMEN, until="21 day", method="NDF")
    assert got.diagnostics.method == "Radau"
    assert got.diagnostics.failed_methods == (("NDF", "injected failure; hint: none"),)
    direct = mechsim.simulate("one_compartment", REGIMEN, until="21 day", method="Radau")
    np.testing.assert_array_equal(got["C"].magnitude, direct["C"].magnitude)


def test_a_clean_run_has_no_failed_methods():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = mechsim.simulate("one_compartment", REGIMEN, until="21 day")
    assert res.diagnostics.failed_methods == ()
