"""cd38_myeloma and isatuximab_poppk against the published anchors (MODELS.md section 1)."""

import sys
from pathlib import Path

import numpy as np
import pytest

import mechsim
from mechsim.analysis import best_response, progression_time

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from icaria import ARMS, DAYS_PER_MONTH, ISATUXIMAB, MEDIAN_PFS_MONTHS


def trough_before_day(res, name, day):
    times, values = res.before_dose(name)
    i = int(np.flatnonzero(np.isclose(times.to("day").magnitude, day))[0])
    return values[i]


@pytest.fixture(scope="module")
def isa_pd():
    return mechsim.simulate("cd38_myeloma", ARMS["Isa-Pd"], until="1000 day", every="1 day")


@pytest.fixture(scope="module")
def pd():
    return mechsim.simulate("cd38_myeloma", ARMS["Pd"], until="1000 day", every="1 day")


def test_poppk_reproduces_published_exposure_anchors():
    res = mechsim.simulate("isatuximab_poppk", ISATUXIMAB, until="365 day")
    trough_c2 = trough_before_day(res, "C", 28).to("mg/L").magnitude
    assert 115 <= trough_c2 <= 120          # MODELS.md: ~115-120 mg/L
    times, troughs = res.before_dose("C")
    late = times.to("day").magnitude > 300  # steady state on the Q2W schedule
    assert np.allclose(troughs[late].to("mg/L").magnitude, 120, rtol=0.05)
    peaks = res["C"].to("mg/L").magnitude[res.time.to("day").magnitude > 300].max()
    assert peaks == pytest.approx(290, rel=0.05)  # ~290 mg/L


def test_mechanistic_trough_agrees_with_poppk_and_anchor(isa_pd):
    # issue 3: within +-25 % of the popPK trough, and inside the ~115-120 mg/L anchor
    mw = mechsim.load_model("cd38_myeloma").parameters_by_name["MW_isa"].value
    mechanistic = (trough_before_day(isa_pd, "C", 28) * mw).to("mg/L").magnitude
    poppk = trough_before_day(mechsim.simulate("isatuximab_poppk", ISATUXIMAB, until="29 day"),
                              "C", 28).to("mg/L").magnitude
    assert abs(mechanistic / poppk - 1) <= 0.25
    assert 115 <= mechanistic <= 120


def test_calibrated_typical_patient_matches_icaria_medians(isa_pd, pd):
    for arm, res in (("Isa-Pd", isa_pd), ("Pd", pd)):
        months = progression_time(res.time, res["M"]).to("day").magnitude / DAYS_PER_MONTH
        assert months == pytest.approx(MEDIAN_PFS_MONTHS[arm], rel=0.03), arm
    assert 0.5 <= best_response(isa_pd["M"]) < 0.9   # median Isa-Pd patient: PR, not VGPR
    assert best_response(pd["M"]) < 0.5              # median Pd patient: no PR (ORR 35 %)


def test_drug_mass_balance_law_includes_every_accumulator(isa_pd):
    laws = [str(law) for law in mechsim.compile_model(mechsim.load_model("cd38_myeloma"))
            .conservation_laws]
    assert laws == ["V1*C + V2*Cp + V1*RC + drug_cleared + drug_internalised + "
                    "drug_with_dead_cells"]
    assert isa_pd.diagnostics.max_conservation_residual < 1e-7


def test_every_value_is_sourced_or_marked():
    for name in ("isatuximab", "pomalidomide_dex", "isatuximab_poppk"):
        for p in mechsim.load_params(name).parameters:
            assert p.source or (p.note and any(word in p.note for word in (
                "assumption", "derived", "calibrated", "typical patient"))), (name, p.name)
