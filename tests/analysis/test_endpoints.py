"""IMWG endpoints against hand-computed cases."""

import math

import numpy as np
import pytest

from mechsim import Quantity, ValidationError
from mechsim.analysis import Response, best_response, progression_time, response_category


def course(values, step=1.0):
    return Quantity(np.arange(len(values)) * step, "day"), Quantity(np.array(values, float), "g/L")


def test_progression_needs_both_relative_and_absolute_rise():
    # nadir 10: +25 % is 12.5, +5 g/L is 15 -> the absolute rule decides: 15 is crossed
    # half way between day 5 (14) and day 6 (16)
    t, m = course([20, 15, 10, 12, 14, 14, 16])
    assert progression_time(t, m).to("day").magnitude == pytest.approx(5.5)
    # nadir 40: +25 % is 50 (beats +5 = 45) -> the relative rule decides: 50 is crossed
    # half way between day 3 (45) and day 4 (55)
    t, m = course([60, 50, 40, 45, 55])
    assert progression_time(t, m).to("day").magnitude == pytest.approx(3.5)


def test_no_progression_is_infinite():
    t, m = course([18, 12, 9, 10, 11])
    assert math.isinf(progression_time(t, m).magnitude)


def test_running_nadir_not_global_minimum():
    # rises 26 % and +5.2 from the first nadir (20) before falling further: the threshold
    # 25 is crossed between day 1 (20) and day 2 (25.2)
    t, m = course([30, 20, 25.2, 10, 11])
    assert progression_time(t, m).to("day").magnitude == pytest.approx(1 + 5 / 5.2)


@pytest.mark.parametrize("reduction, category", [(0.95, Response.VGPR), (0.9, Response.VGPR),
                                                 (0.6, Response.PR), (0.3, Response.MR),
                                                 (0.1, Response.SD)])
def test_response_categories(reduction, category):
    assert response_category(reduction) is category


def test_best_response_and_ordering():
    _, m = course([20, 8, 5, 9])
    assert best_response(m) == pytest.approx(0.75)
    assert Response.VGPR.at_least(Response.PR) and not Response.MR.at_least(Response.PR)


def test_units_are_checked():
    t, _ = course([1, 2, 3])
    with pytest.raises(ValidationError, match="g/L"):
        progression_time(t, Quantity([1, 2, 3], "mg"))
