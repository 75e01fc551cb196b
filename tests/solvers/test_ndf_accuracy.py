"""The compiled engine's accuracy on the benchmark's workload (issue: a population engine
near the arithmetic floor): the nominal run within 1e-6 relative of a tight-tolerance
reference computed by another method, on every state and every value above 1e-9."""

from pathlib import Path

import numpy as np

import mechsim

MODEL = Path(__file__).resolve().parents[2] / "benchmarks" / "models" / "cd38_myeloma_gen1.toml"
SCHEDULE = ("10.0 mg/kg iv over 1 h on days 1,8,15,22 of 28-day cycle x 1 then on days 1,15 "
            "of 28-day cycles")


def test_the_nominal_run_matches_a_tight_lsoda_reference():
    model = mechsim.load_model(MODEL)
    common = {"until": "365 day", "every": "1 day"}
    ndf = mechsim.simulate(model, SCHEDULE, rtol=1e-8, atol=1e-12, method="NDF", **common)
    reference = mechsim.simulate(model, SCHEDULE, rtol=1e-12, atol=1e-16, method="LSODA",
                                 **common)
    y, ref = ndf.states, reference.states
    assert y.shape == ref.shape == (len(ndf.state_names), 366)
    above = np.abs(ref) > 1e-9
    worst = np.max(np.abs(y[above] - ref[above]) / np.abs(ref[above]))
    assert worst < 1e-6, worst
    # and the troughs before each dose, which the grid does not hold
    for name in ("C", "RC"):
        t_ndf, v_ndf = ndf.before_dose(name)
        t_ref, v_ref = reference.before_dose(name)
        np.testing.assert_array_equal(t_ndf.magnitude, t_ref.magnitude)
        np.testing.assert_allclose(v_ndf.magnitude[1:], v_ref.magnitude[1:], rtol=1e-6)
