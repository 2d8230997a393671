"""DEIM criterion: Hungarian matcher, loss functions, the full DEIMCriterion and its builder."""

from deimv2.loss.build import OFFICIAL_CRITERION, build_criterion
from deimv2.loss.criterion import DEIMCriterion
from deimv2.loss.matcher import HungarianMatcher, union_match_indices

__all__ = ["HungarianMatcher", "DEIMCriterion", "union_match_indices", "build_criterion", "OFFICIAL_CRITERION"]
