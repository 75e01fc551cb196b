"""Isatuximab + pomalidomide/dexamethasone (ICARIA-MM) in a typical IgG myeloma patient.

Simulates one year of the Isa-Pd and Pd regimens with the mechanistic model cd38_myeloma,
prints CD38 occupancy in the bone marrow (where the myeloma cells are), tumour burden,
M-protein, NK cells and drug concentration at weeks 4, 8, 12, 24 and 52, compares the trough
before cycle 2 with the published popPK model (Fau et al. 2020), and saves a multi-panel
figure.  The typical patient is one patient: the trial's medians are a population property
(`mechsim run icaria_mm`, docs/trials.md).

Run:  python examples/cd38_icaria.py     (writes cd38_icaria.png in the current folder)
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from icaria import ARMS, DAYS_PER_MONTH, ISATUXIMAB, MEDIAN_PFS_MONTHS

import mechsim
from mechsim.analysis import best_response, progression_time, response_category

WEEKS = [4, 8, 12, 24, 52]

model = mechsim.load_model("cd38_myeloma")
mw = model.parameters_by_name["MW_isa"].value
# default output grid: 1001 times plus every dose and infusion end (peaks are kept)
results = {arm: mechsim.simulate(model, regimen, until="52 weeks")
           for arm, regimen in ARMS.items()}

print("Typical IgG myeloma patient, 75.6 kg, baseline M-protein 18 g/L")
print("(values on day 7 x week; an infusion due that day has not started yet)\n")
for arm, res in results.items():
    print(f"{arm}: {ARMS[arm]}")
    print("  week   marrow RO [%]   tumour [rel.]   M-protein [g/L]   NK [rel.]"
          "   isatuximab [mg/L]")
    for week in WEEKS:
        i = int(np.argmin(abs(res.time.to("week").magnitude - week)))
        print(f"  {week:>4}   {res['RO'][i].to('percent').magnitude:13.1f}   "
              f"{res['N'][i].magnitude:13.3f}   {res['M'][i].to('g/L').magnitude:15.2f}   "
              f"{res['NK'][i].magnitude:9.3f}   {res['C_mass'][i].to('mg/L').magnitude:17.1f}")
    pfs = progression_time(res.time, res["M"]).to("day").magnitude / DAYS_PER_MONTH
    reduction = best_response(res["M"])
    pfs_text = f"{pfs:.2f} months" if np.isfinite(pfs) else "> 12 months"
    print(f"  progression-free survival {pfs_text} (ICARIA-MM median of the trial "
          f"{MEDIAN_PFS_MONTHS[arm]} months); best M-protein fall {reduction:.0%} "
          f"({response_category(reduction).value})\n")


def trough_before_cycle_2(res, name):
    times, values = res.before_dose(name)
    return values[int(np.argmin(abs(times.to("day").magnitude - 28)))]


mechanistic = (trough_before_cycle_2(results["Isa-Pd"], "C") * mw).to("mg/L")
poppk_res = mechsim.simulate("isatuximab_poppk", ISATUXIMAB, until="29 day")
poppk = trough_before_cycle_2(poppk_res, "C").to("mg/L")
print("Trough before cycle 2 (day 29), 10 mg/kg ICARIA schedule:")
print(f"  mechanistic cd38_myeloma   {mechanistic.magnitude:6.1f} mg/L")
print(f"  popPK (Fau 2020)           {poppk.magnitude:6.1f} mg/L")
print(f"  difference                 {mechanistic.magnitude / poppk.magnitude - 1:+6.1%}"
      "   (published anchor: ~115-120 mg/L; kdeg is calibrated to the popPK value)")

# Cycle 6 (days 141-168, Q2W dosing): not used in any calibration, so a prediction.
poppk_year = mechsim.simulate("isatuximab_poppk", ISATUXIMAB, until="169 day", every="0.25 day")


def cycle_6_trough_and_peak(res, concentration):
    times, before = res.before_dose(concentration)
    trough = before[int(np.argmin(abs(times.to("day").magnitude - 168)))]
    in_cycle = (res.time.to("day").magnitude > 140) & (res.time.to("day").magnitude <= 168)
    return trough.to("mg/L").magnitude, res[concentration][in_cycle].to("mg/L").magnitude.max()


mech_trough, mech_peak = cycle_6_trough_and_peak(results["Isa-Pd"], "C_mass")
pop_trough, pop_peak = cycle_6_trough_and_peak(poppk_year, "C")
print("Cycle 6 (Q2W) trough / peak (prediction; anchor ~120 / ~290 mg/L):")
print(f"  mechanistic cd38_myeloma   {mech_trough:6.1f} / {mech_peak:5.1f} mg/L")
print(f"  popPK (Fau 2020)           {pop_trough:6.1f} / {pop_peak:5.1f} mg/L")

fig, axes = plt.subplots(2, 3, figsize=(13, 7), sharex=True)
panels = [
    ("C_mass", "mg/L", "free isatuximab [mg/L]", True),
    ("RO", "percent", "CD38 occupancy, marrow myeloma cells [%]", False),
    ("N", "", "myeloma burden [relative to baseline]", False),
    ("M", "g/L", "serum M-protein [g/L]", False),
    ("NK", "", "NK cells [relative to baseline]", False),
    ("S_pd", "", "Pd sensitivity [relative] (same in both arms)", False),
]
colours = {"Isa-Pd": "tab:blue", "Pd": "tab:orange"}
for ax, (name, unit, label, log) in zip(axes.flat, panels):
    for arm, res in results.items():
        values = res[name].to(unit).magnitude if unit else res[name].magnitude
        ax.plot(res.time.to("week").magnitude, values, color=colours[arm], label=arm)
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    if log:
        ax.set_yscale("log")
axes[0, 0].set_ylim(1, None)
axes[1, 0].axhline(18 * 0.5, color="grey", ls=":", lw=1)
axes[1, 0].text(1, 18 * 0.5, "PR (-50 %)", fontsize=8, va="bottom", color="grey")
for ax in axes[1]:
    ax.set_xlabel("time [weeks]")
axes[0, 0].legend()
fig.suptitle("ICARIA-MM regimens, typical IgG myeloma patient (mechsim cd38_myeloma)")
fig.tight_layout()
fig.savefig("cd38_icaria.png", dpi=110)
print("wrote cd38_icaria.png")
