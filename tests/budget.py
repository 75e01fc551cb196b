"""Example budgets for Hypothesis tests (the profiles themselves are in conftest.py)."""

import os

from hypothesis import settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")
#: How many times more examples the thorough profile runs than the default one.
THOROUGH_FACTOR = 20


def examples(n: int) -> settings:
    """Settings for a test whose budget differs from the profile's: ``n`` examples by
    default, ``THOROUGH_FACTOR`` times as many in the thorough profile."""
    return settings(max_examples=n * (THOROUGH_FACTOR if PROFILE == "thorough" else 1))
