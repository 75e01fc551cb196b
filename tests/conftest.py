import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# CI: deterministic and quick.  Locally: a few more examples.  `-m slow` tests ask for more.
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=50)
settings.register_profile("heavy", deadline=None, max_examples=400,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def write_model(tmp_path):
    """Write TOML text to a file and return its path."""
    def write(text: str, name: str = "model.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path
    return write
