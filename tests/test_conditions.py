"""Conditions in models: piecewise rates and rules, against closed forms, with every
method, and in mechsim's SBML export read by libRoadRunner."""

import math

import numpy as np
import pytest

import mechsim

MODEL = """
[model]
name = "switch"

[parameters]
k1 = { value = "1 1/day", note = "test" }
k2 = { value = "0.1 1/day", note = "test" }
Cs = { value = "5 nM", note = "test" }
V = { value = "1 L", note = "test" }

[compartments]
c = "V"

[species.C]
compartment = "c"
unit = "nM"
initial = "10 nM"

[reactions.elimination]
equation = "C ->"
rate = "piecewise(k1*C, C > Cs, k2*C)"

[rules]
fast = 'piecewise(1, C > "5 nM" and t < "100 day", 0)'
"""


def exact(t):
    """C falls at rate 1/day from 10 nM until it reaches Cs = 5 nM (at ln 2 days), then at
    0.1/day."""
    switch = math.log(2.0)
    return np.where(t < switch, 10 * np.exp(-t), 5 * np.exp(-0.1 * (t - switch)))


@pytest.mark.parametrize("method", ["NDF", "LSODA", "BDF", "Radau"])
def test_a_piecewise_rate_follows_the_closed_form(tmp_path, method):
    path = tmp_path / "switch.toml"
    path.write_text(MODEL)
    res = mechsim.simulate(mechsim.load_model(path), None, until="5 day", every="0.25 day",
                           method=method)
    t = res.time.to("day").magnitude
    np.testing.assert_allclose(res["C"].to("nM").magnitude, exact(t), rtol=2e-6)
    np.testing.assert_array_equal(res["fast"].magnitude, (exact(t) > 5).astype(float))


def test_the_export_of_a_piecewise_model_agrees_with_roadrunner(tmp_path):
    roadrunner = pytest.importorskip("roadrunner")
    from mechsim.io.sbml import export_sbml, validate_sbml

    path = tmp_path / "switch.toml"
    path.write_text(MODEL)
    text = export_sbml(path)
    assert validate_sbml(text) == []
    out = roadrunner.RoadRunner(text).simulate(0, 5, 21)
    np.testing.assert_allclose(out[:, 1], exact(out[:, 0]), rtol=1e-5)
