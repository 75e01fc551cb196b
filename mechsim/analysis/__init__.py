"""Analyses built on simulation results."""

from .dose_response import (
                            ExposureResponse,
                            ExposureResponses,
                            HillFit,
                            LinearFit,
                            concentration_effect,
                            dose_range,
                            dose_response,
)
from .endpoints import Response, best_response, progression_time, response_category
from .metrics import METRICS, Metric
from .nca import NCAResult, nca_profile  # not nca(): as a name here it would hide the module
from .nca_sources import nca_of_result, nca_of_subject
from .sensitivity import (
                            LocalSensitivity,
                            SobolResult,
                            local_sensitivity,
                            ranges_from_params,
                            sobol_indices,
)

__all__ = ["METRICS", "ExposureResponse", "ExposureResponses", "HillFit", "LinearFit",
           "LocalSensitivity", "Metric", "NCAResult", "Response", "SobolResult",
           "best_response", "concentration_effect", "dose_range", "dose_response",
           "local_sensitivity", "nca_of_result", "nca_of_subject", "nca_profile",
           "progression_time", "ranges_from_params", "response_category", "sobol_indices"]
