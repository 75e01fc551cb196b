"""What SBML export and import share: libsbml on first use, the annotation namespace, and
mechsim's canonical units as SBML unit kinds."""

from __future__ import annotations

from contextvars import ContextVar

import pint

from ..errors import MissingDependency
from ..optional import require
from ..units import CANONICAL_BASE, ureg

__all__ = ["MAX_SBML_BYTES", "NAMESPACE", "SBMLSupportMissing", "libsbml", "nice_unit",
           "one_line"]

#: Published SBML models reach a few MB; larger files are refused before libsbml reads them.
MAX_SBML_BYTES = 50_000_000

#: XML namespace of the mechsim annotation (routes, drugs, reporting units, sources).
NAMESPACE = "urn:mechsim:sbml:1"
PREFIX = "mechsim"
XHTML = "http://www.w3.org/1999/xhtml"

# mechsim base dimension -> (SBML unit kind name, scale, multiplier, id symbol)
BASE = {
    "[time]": ("second", 0, 86400.0, "day"),
    "[substance]": ("mole", -9, 1.0, "nmol"),
    "[length]": ("metre", -1, 1.0, "dm"),
    "[mass]": ("gram", 0, 1.0, "g"),
    "[current]": ("ampere", 0, 1.0, "A"),
    "[temperature]": ("kelvin", 0, 1.0, "K"),
    "[luminosity]": ("candela", 0, 1.0, "cd"),
}
ORDER = ("[substance]", "[mass]", "[current]", "[temperature]", "[luminosity]", "[length]",
         "[time]")
DAY = ureg.day.dimensionality
VOLUME = ureg.L.dimensionality

#: The default of ``strict_units`` for SBML imports that do not say (the command line's
#: ``--strict-units`` sets it for one command)
STRICT_UNITS: ContextVar[bool] = ContextVar("mechsim_sbml_strict_units", default=False)

#: Kept for code that caught it by name: the same class as every missing extra.
SBMLSupportMissing = MissingDependency


def libsbml():
    """The libsbml module, or a one-line MissingDependency with the install command."""
    return require("libsbml", "SBML support")


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def nice_unit(q: pint.Quantity | pint.Unit) -> pint.Unit:
    """mechsim's canonical unit for the dimension of ``q``, volumes written in litres."""
    unit = ureg.dimensionless
    for d, e in dict((1 * q).dimensionality).items():
        if d == "[length]" and float(e / 3).is_integer():
            unit = unit * ureg.L ** (e / 3)
        else:
            unit = unit * CANONICAL_BASE[d] ** e
    return unit
