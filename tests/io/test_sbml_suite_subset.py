"""A subset of the SBML Test Suite's semantic cases (tests/data/sbml_suite/, with the
suite's licence), run with the suite's own pass rule by the runner of tools/sbml_suite.py:
what the full run measures (docs/sbml.md) is guarded here.  Expected values are the
suite's, never mechsim's."""

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("libsbml")

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "sbml_suite"
_spec = importlib.util.spec_from_file_location("sbml_suite", ROOT / "tools" / "sbml_suite.py")
suite = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("sbml_suite", suite)  # dataclasses look their module up
_spec.loader.exec_module(suite)

CASES = sorted(p.name for p in DATA.iterdir() if p.is_dir() and p.name.isdigit())
#: cases mechsim refuses, by design (one line each): the refusal is the expected outcome
REFUSED = {line.split()[0]: line.split(None, 1)[1].strip()
           for line in (DATA / "refused.txt").read_text().splitlines()
           if line.strip() and not line.startswith("#")}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("case", CASES)
def test_suite_case(case):
    outcome, detail = suite.run_case(str(DATA / case))
    if case in REFUSED:
        assert outcome == "refused", detail
        assert REFUSED[case] in detail
        assert "\n" not in detail
        return
    assert outcome == "pass", detail


def test_the_subset_spans_the_tags():
    tags = set()
    for case in CASES:
        c = suite.read_case(DATA / case)
        tags.update(c.test_tags + c.component_tags)
    for tag in ("EventWithDelay", "EventNoDelay", "NonConstantCompartment", "RateRule",
                "AssignmentRule", "InitialAssignment", "ConversionFactors",
                "AssignedConstantStoichiometry", "UncommonMathML", "CSymbolRateOf",
                "HasOnlySubstanceUnits", "0D-Compartment", "AlgebraicRule", "FastReaction",
                "comp:Submodel", "comp:ReplacedBy", "comp:Deletion"):
        assert tag in tags, tag
