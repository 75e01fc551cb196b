"""Quickstart: a weekly antibody regimen in the built-in one-compartment model.

Run:  python examples/quickstart.py   (writes quickstart.png in the current folder)
"""

import matplotlib

matplotlib.use("Agg")  # no screen needed
import matplotlib.pyplot as plt

import mechsim

model = mechsim.load_model("one_compartment")
regimen = mechsim.Regimen.parse("100 mg iv over 1 h every 7 days x 4")
res = mechsim.simulate(model, regimen, until="6 weeks", params="one_compartment_typical")

print(f"model: {model.name} - {model.description}")
print(f"regimen: {regimen}")
print(f"conservation law: {[str(law) for law in mechsim.compile_model(model).conservation_laws]}")
print("week   C [mg/L]   eliminated [mg]")
for week in range(7):
    i = abs(res.time.to("week").magnitude - week).argmin()
    eliminated = (res["eliminated"][i] * model.parameters_by_name["MW"].value).to("mg")
    print(f"{week:>4}   {res['C_mass'][i].to('mg/L').magnitude:8.2f}   "
          f"{eliminated.magnitude:10.1f}")
print(f"mass-balance residual: {res.diagnostics.max_conservation_residual:.1e}")

fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(res.time.to("day").magnitude, res["C_mass"].to("mg/L").magnitude)
ax.set_xlabel("time [day]")
ax.set_ylabel("plasma concentration [mg/L]")
ax.set_title("100 mg IV over 1 h, weekly x 4 (one-compartment model)")
ax.grid(alpha=0.3)
fig.tight_layout()
fig.savefig("quickstart.png", dpi=120)
print("wrote quickstart.png")
