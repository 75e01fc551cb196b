"""The ICARIA-MM reproduction (issue 8's acceptance test): the shipped scenario's virtual trial,
2,000 patients per arm, against the published results (Attal et al., Lancet 2019).

Calibrated (examples/calibrate_icaria_population.py: on 500 patients per arm without accrual
censoring, then k_isa on this 2,000-patient Isa-Pd arm): the medians of PFS and the ORR of
both arms.  Not fitted: the hazard ratio (two
unsourced spreads were set by hand with it in view, see the script) and the >= VGPR rates,
printed here.
Marked slow: about three minutes on two cores (more with the Pd check).
"""

import os

import pytest

from mechsim.scenario import read_scenario
from mechsim.trial import run_trial

pytest.importorskip("numba")
pytest.importorskip("lifelines")

SCENARIO = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "scenarios",
                        "icaria_mm.toml")


@pytest.mark.slow
def test_icaria_mm_is_reproduced():
    trial = read_scenario(SCENARIO).trial
    assert all(a.size >= 2000 for a in trial.arms)
    result = run_trial(trial)
    for arm, median, orr in (("isa_pd", 11.53, 0.60), ("pd", 6.47, 0.35)):
        km = result.kaplan_meier(arm)
        assert abs(km.median / median - 1) <= 0.15, (arm, km.median)
        rate = result.rate(arm)[0]
        assert abs(rate - orr) <= 0.10, (arm, rate)
    hr = result.hazard_ratio("isa_pd", "pd")
    assert 0.50 <= hr.value <= 0.70, hr
    for row in result.summary():
        print(row)


@pytest.mark.slow
def test_pd_arm_meets_the_stage_one_targets():
    """Stage 1 of examples/calibrate_icaria_population.py fits both arms on 500 patients per
    arm; stage 2 then moves only k_isa, which does not act in the Pd arm.  So at the values
    in the population file the Pd arm must still meet its stage-1 targets.  (That a rerun of
    the script ends at the file's values is the script's own check: exit status 0.)"""
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
    import calibrate_icaria_population as cal

    trial = cal.calibration_trial(read_scenario(SCENARIO).trial)
    got = cal.outcomes(cal.with_values(trial, cal.file_values(trial)))
    pfs, _, orr = got["pd"]
    assert abs(pfs / cal.MEDIAN_PFS["pd"] - 1) < 0.03, pfs
    assert abs(orr - cal.ORR["pd"]) < 0.03, orr
