"""SBML in and out (needs ``python-libsbml``: ``pip install 'mechsim[sbml]'``).

Export, with doses as events, is in :mod:`mechsim.io.sbml_export`; import in
:mod:`mechsim.io.sbml_import`; what they share in :mod:`mechsim.io.sbml_common`.  This
module gathers the public functions.  See ``docs/sbml.md``.
"""

from .sbml_common import MAX_SBML_BYTES, NAMESPACE, SBMLSupportMissing
from .sbml_export import export_sbml, sbml_warnings, validate_sbml, write_sbml
from .sbml_import import (
    SBMLImport,
    SBMLSymbol,
    import_sbml,
    import_sbml_text,
    parse_sbml,
    read_sbml,
)

__all__ = [
    "MAX_SBML_BYTES",
    "NAMESPACE",
    "SBMLImport",
    "SBMLSupportMissing",
    "SBMLSymbol",
    "export_sbml",
    "import_sbml",
    "import_sbml_text",
    "parse_sbml",
    "read_sbml",
    "sbml_warnings",
    "validate_sbml",
    "write_sbml",
]
