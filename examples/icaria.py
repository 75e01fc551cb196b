"""ICARIA-MM regimens (Attal et al., Lancet 2019), shared by the CD38 examples.

Isa-Pd: isatuximab 10 mg/kg IV days 1, 8, 15, 22 of cycle 1, then days 1 and 15 of each
28-day cycle; pomalidomide 4 mg orally days 1-21 (dexamethasone is lumped into the Pd
effect).  Pd: pomalidomide + dexamethasone alone.
"""

import mechsim

ISATUXIMAB = ("10 mg/kg iv over 1 h on days 1,8,15,22 of 28-day cycle x 1 "
              "then on days 1,15 of 28-day cycles")
POMALIDOMIDE = "4 mg oral on days 1-21 of 28-day cycles"
ARMS = {
    "Isa-Pd": mechsim.Regimen.parse(f"{ISATUXIMAB}; {POMALIDOMIDE}"),
    "Pd": mechsim.Regimen.parse(POMALIDOMIDE),
}
DAYS_PER_MONTH = 365.25 / 12

# Published outcomes (Attal et al. 2019) and the typical-patient targets derived from them.
MEDIAN_PFS_MONTHS = {"Isa-Pd": 11.53, "Pd": 6.47}
ORR = {"Isa-Pd": 0.60, "Pd": 0.35}            # >= PR
VGPR_RATE = {"Isa-Pd": 0.318, "Pd": 0.085}    # >= VGPR
