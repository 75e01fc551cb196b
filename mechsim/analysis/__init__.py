"""Analyses built on simulation results."""

from .dose_response import (
                            ExposureResponse,
                            HillFit,
                            concentration_effect,
                            dose_range,
                            dose_response,
)
from .endpoints import Response, best_response, progression_time, response_category
from .metrics import METRICS, Metric

__all__ = ["METRICS", "ExposureResponse", "HillFit", "Metric", "Response", "best_response",
           "concentration_effect", "dose_range", "dose_response", "progression_time",
           "response_category"]
