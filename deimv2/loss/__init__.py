"""DEIM criterion: Hungarian matcher, loss functions, the full DEIMCriterion and its builder."""

from .build import OFFICIAL_CRITERION, build_criterion
from .criterion import DEIMCriterion
from .matcher import HungarianMatcher, union_match_indices

__all__ = ["HungarianMatcher", "DEIMCriterion", "union_match_indices", "build_criterion", "OFFICIAL_CRITERION"]
