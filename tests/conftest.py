"""Shared fixtures and the Hypothesis profiles.

Two profiles (the README, section Tests):

* ``default``, what ``python -m pytest`` gives everyone with no environment variable set:
  derandomized (the same examples on every machine and every run, no example database),
  no deadline, a modest number of examples per test.
* ``thorough``, for hunting bugs: ``HYPOTHESIS_PROFILE=thorough python -m pytest``.
  Random examples, 20 times as many, failures saved in ``.hypothesis/`` and replayed first
  on the next thorough run.  A failure it finds is fixed in the code or in the property.
"""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from budget import PROFILE, THOROUGH_FACTOR

settings.register_profile("default", derandomize=True, deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, max_examples=25 * THOROUGH_FACTOR,
                          suppress_health_check=[HealthCheck.too_slow])
if PROFILE not in ("default", "thorough"):
    raise pytest.UsageError(f"HYPOTHESIS_PROFILE must be 'default' or 'thorough', got "
                            f"{PROFILE!r}")
settings.load_profile(PROFILE)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def write_model(tmp_path):
    """Write TOML text to a file and return its path."""
    def write(text: str, name: str = "model.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path
    return write
