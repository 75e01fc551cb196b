"""Small models written in the documented file format, shared by several test modules."""

import tempfile
from functools import cache
from pathlib import Path

from mechsim import load_model

TMDD = """
[model]
name = "tmdd_toy"
description = "binding only: C + R <-> RC in one compartment"

[parameters]
V = "3 L"
kon = "1e5 1/(M*s)"
koff = "1e-3 1/s"
R0 = "10 nM"

[compartments]
central = "V"

[species.C]
compartment = "central"
unit = "nM"
initial = "5 nM"

[species.R]
compartment = "central"
unit = "nM"
initial = "R0"

[species.RC]
compartment = "central"
unit = "nM"
initial = 0

[reactions.binding]
equation = "C + R <-> RC"
rate = "kon*C*R - koff*RC"

[rules]
RO = "RC/(R + RC)"
"""

TWO_CPT_TMDD = TMDD.replace('[compartments]\ncentral = "V"', '''[compartments]
central = "V"
peripheral = "V2"''').replace('R0 = "10 nM"', '''R0 = "10 nM"
V2 = "2 L"
Q = "0.5 L/day"
CL = "0.2 L/day"
ksyn = "1 nM/day"
kdeg = "0.1 1/day"
kint = "0.5 1/day"''') + '''
[species.Cp]
compartment = "peripheral"
unit = "nM"
initial = 0

[species.eliminated]
unit = "nmol"
initial = 0

[reactions.distribution]
equation = "C -> Cp"
rate = "Q*(C - Cp)"

[reactions.clearance]
equation = "C -> eliminated"
rate = "CL*C"

[reactions.synthesis]
equation = "-> R"
rate = "ksyn"

[reactions.degradation]
equation = "R ->"
rate = "kdeg*R"

[reactions.internalisation]
equation = "RC -> eliminated"
rate = "kint*RC"

[routes.iv]
target = "C"
'''


@cache
def two_compartment_tmdd():
    """The open two-compartment TMDD model, loaded once per test session."""
    path = Path(tempfile.mkdtemp()) / "tmdd.toml"
    path.write_text(TWO_CPT_TMDD)
    return load_model(path)
