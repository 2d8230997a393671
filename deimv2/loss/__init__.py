"""DEIM criterion: Hungarian matcher, loss functions and the full DEIMCriterion."""

from .criterion import DEIMCriterion
from .matcher import HungarianMatcher, union_match_indices

__all__ = ["HungarianMatcher", "DEIMCriterion", "union_match_indices", "build_criterion"]


def build_criterion(
    num_classes: int = 80,
    weight_dict: dict[str, float] | None = None,
    losses: list[str] | None = None,
    gamma: float = 1.5,
    alpha: float = 0.75,
    reg_max: int = 32,
    use_uni_set: bool = True,
    matcher_weight_dict: dict[str, float] | None = None,
    matcher_alpha: float = 0.25,
    matcher_gamma: float = 2.0,
    change_matcher: bool = True,
    iou_order_alpha: float = 4.0,
    matcher_change_epoch: int = 45,
    mal_alpha: float | None = None,
    boxes_weight_format: str | None = None,
) -> DEIMCriterion:
    """DEIMCriterion + HungarianMatcher with the DEIMv2 defaults (configs/base/deimv2.yml).

    Per-variant values: Atto/Femto/Pico use ``losses=['mal', 'boxes']``, ``use_uni_set=False``,
    ``matcher_change_epoch=450``; N/S/M/L/X keep ``['mal', 'boxes', 'local']`` with the epoch of their config.

    Explained in notebooks/09_loss.ipynb §5.
    """
    if weight_dict is None:
        weight_dict = {"loss_mal": 1, "loss_bbox": 5, "loss_giou": 2, "loss_fgl": 0.15, "loss_ddf": 1.5}
    if losses is None:
        losses = ["mal", "boxes", "local"]
    if matcher_weight_dict is None:
        matcher_weight_dict = {"cost_class": 2, "cost_bbox": 5, "cost_giou": 2}
    matcher = HungarianMatcher(
        matcher_weight_dict,
        use_focal_loss=True,
        alpha=matcher_alpha,
        gamma=matcher_gamma,
        change_matcher=change_matcher,
        iou_order_alpha=iou_order_alpha,
        matcher_change_epoch=matcher_change_epoch,
    )
    return DEIMCriterion(
        matcher,
        weight_dict,
        losses,
        alpha=alpha,
        gamma=gamma,
        num_classes=num_classes,
        reg_max=reg_max,
        boxes_weight_format=boxes_weight_format,
        mal_alpha=mal_alpha,
        use_uni_set=use_uni_set,
    )
