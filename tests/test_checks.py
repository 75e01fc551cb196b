"""mechsim.checks.check_model: the report `mechsim check` prints."""

import pytest

from mechsim import ValidationError
from mechsim.checks import check_model


def test_a_shipped_model_passes_every_check():
    report = check_model("cd40_apc")
    assert report.ok and [s.ok for s in report.steps] == [True, True, True]
    assert str(report).splitlines()[0].startswith("ok   load and unit check: ")
    assert "mass-balance residual" in str(report)


def test_a_model_that_fails_to_load_is_a_failed_check_not_an_error(write_model):
    report = check_model(write_model('[species.x]\nunit = "nM"\n[reactions.r]\n'
                                     'equation = "x ->"\nrate = "x"\n'))
    assert not report.ok and len(report.steps) == 1
    assert str(report).startswith("FAIL load and unit check: ")


def test_an_unknown_name_is_an_error():
    with pytest.raises(ValidationError, match="did you mean 'cd40_apc'"):
        check_model("cd40_ap")
