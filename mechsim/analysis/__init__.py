"""Analyses built on simulation results."""

from .endpoints import Response, best_response, progression_time, response_category

__all__ = ["Response", "best_response", "progression_time", "response_category"]
