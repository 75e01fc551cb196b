"""What each killing route of isatuximab contributes (docs/cd38_myeloma.md), typical patient.

For isatuximab 10 mg/kg on the ICARIA schedule, alone, with Pd and with Kd, over the first
24 weeks:

* cells killed by each route: the integral of kill_route(t) * N(t), in units of the
  baseline tumour (so 0.5 means half a baseline tumour's worth of cells), and its share of
  all cells killed;
* M-protein at week 24 with every route, and with one route switched off at a time (its
  rate set to zero): the route's marginal effect, which includes the knock-on changes (a
  smaller tumour is a smaller CD38 sink, so occupancy rises and the other routes kill more).

Run:  python examples/cd38_routes.py        (a few seconds)
"""

from icaria import ISATUXIMAB, POMALIDOMIDE
from scipy.integrate import trapezoid

import mechsim

KD = ("20 mg/m2 carfilzomib over 30 min on days 1,2 of 28-day cycle x 1; 56 mg/m2 carfilzomib "
      "over 30 min on days 8,9,15,16 of 28-day cycle x 1 then on days 1,2,8,9,15,16 of "
      "28-day cycles")
REGIMENS = {"isatuximab alone": ISATUXIMAB, "Isa-Pd": f"{ISATUXIMAB}; {POMALIDOMIDE}",
            "Isa-Kd": f"{ISATUXIMAB}; {KD}"}
BACKBONES = {"isatuximab alone": None, "Isa-Pd": POMALIDOMIDE, "Isa-Kd": KD}
ROUTES = {"ADCC (NK cells)": ("kill_adcc", "k_adcc"),
          "ADCP (macrophages)": ("kill_adcp", "k_adcp"),
          "CDC (complement)": ("kill_cdc", "k_cdc"),
          "direct apoptosis": ("kill_apoptosis", "k_apo")}
UNTIL = "24 weeks"


def m_week_24(model, regimen, overrides=None) -> float:
    if regimen is None:
        res = mechsim.simulate(model, None, until=UNTIL, overrides=overrides)
    else:
        res = mechsim.simulate(model, regimen, until=UNTIL, every="1 day", overrides=overrides)
    return float(res["M"].to("g/L").magnitude[-1])


def main() -> None:
    model = mechsim.load_model("cd38_myeloma")
    for label, regimen in REGIMENS.items():
        res = mechsim.simulate(model, regimen, until=UNTIL, every="0.25 day")
        t, n = res.time_days, res["N"].to("").magnitude
        killed = {route: trapezoid(res[rate].to("1/day").magnitude * n, t)
                  for route, (rate, _) in ROUTES.items()}
        backbone = trapezoid((res["kill_pd"] + res["kill_kd"]).to("1/day").magnitude * n, t)
        total = sum(killed.values()) + backbone
        m_all = m_week_24(model, regimen)
        m_backbone = m_week_24(model, BACKBONES[label])
        print(f"{label}: M-protein at week 24 {m_all:.2f} g/L (backbone alone "
              f"{m_backbone:.2f} g/L); marrow occupancy day 28 "
              f"{res['RO'].to('').magnitude[112]:.0%}")
        print(f"  {'route':20s} {'cells killed':>12s} {'share':>6s} {'M wk 24 without it':>19s}")
        for route, (_, rate) in ROUTES.items():
            without = m_week_24(model, regimen, {rate: mechsim.Quantity(0, "1/day")})
            print(f"  {route:20s} {killed[route]:12.3f} {killed[route] / total:6.0%} "
                  f"{without:15.2f} g/L")
        if BACKBONES[label]:
            print(f"  {'backbone':20s} {backbone:12.3f} {backbone / total:6.0%}")


if __name__ == "__main__":
    main()
