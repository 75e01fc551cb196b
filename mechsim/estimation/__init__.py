"""Estimation: fit models to data (maximum likelihood with exact gradients), diagnostics."""

from .fit import FitResult, IndividualFits, Profile, fit

__all__ = ["FitResult", "IndividualFits", "Profile", "fit"]
