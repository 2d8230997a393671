"""The one criterion builder: a config (or keyword arguments) -> ``DEIMCriterion`` + ``HungarianMatcher``.

The trainer builds the criterion here, beside the model (``deimv2.models.build``), not inside it: a model knows
no loss. Explained in notebooks/09_loss.ipynb §5.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deimv2.config.sections import CriterionConfig
from deimv2.loss.criterion import DEIMCriterion
from deimv2.loss.matcher import HungarianMatcher

if TYPE_CHECKING:
    from deimv2.config.loader import Config

__all__ = ["OFFICIAL_CRITERION", "build_criterion"]


def _sections_kwargs(c: CriterionConfig, num_classes: int) -> dict[str, Any]:
    """``build_criterion`` keywords from a criterion section (matcher keys prefixed ``matcher_``)."""
    m = c.matcher
    return {
        "num_classes": num_classes,
        "weight_dict": c.weight_dict,
        "losses": c.losses,
        "gamma": c.gamma,
        "alpha": c.alpha,
        "reg_max": c.reg_max,
        "use_uni_set": c.use_uni_set,
        "matcher_weight_dict": m.weight_dict,
        "matcher_alpha": m.alpha,
        "matcher_gamma": m.gamma,
        "change_matcher": m.change_matcher,
        "iou_order_alpha": m.iou_order_alpha,
        "matcher_change_epoch": m.matcher_change_epoch,
    }


#: The ``DEIMCriterion`` section of the official ``configs/base/deimv2.yml`` (matcher keys prefixed ``matcher_``),
#: taken from the typed config sections, their one home (:class:`~deimv2.config.sections.CriterionConfig`).
#: Used for every argument that neither ``cfg`` nor a keyword gives. Per variant the official configs change
#: Atto/Femto/Pico to ``losses=['mal', 'boxes']``, ``use_uni_set=False``, ``matcher_change_epoch=450``;
#: N/S/M/L/X keep ``['mal', 'boxes', 'local']`` with their own ``matcher_change_epoch``.
OFFICIAL_CRITERION: dict[str, Any] = {
    **_sections_kwargs(CriterionConfig(), num_classes=80),
    "mal_alpha": None,
    "boxes_weight_format": None,
}


def _from_config(cfg: Config) -> dict[str, Any]:
    return _sections_kwargs(cfg.criterion, cfg.num_classes)


def build_criterion(
    cfg: Config | None = None,
    *,
    num_classes: int | None = None,
    weight_dict: dict[str, float] | None = None,
    losses: list[str] | None = None,
    gamma: float | None = None,
    alpha: float | None = None,
    reg_max: int | None = None,
    use_uni_set: bool | None = None,
    matcher_weight_dict: dict[str, float] | None = None,
    matcher_alpha: float | None = None,
    matcher_gamma: float | None = None,
    change_matcher: bool | None = None,
    iou_order_alpha: float | None = None,
    matcher_change_epoch: int | None = None,
    mal_alpha: float | None = None,
    boxes_weight_format: str | None = None,
) -> DEIMCriterion:
    """``DEIMCriterion`` with its ``HungarianMatcher``.

    Each value comes from the keyword if given, else from ``cfg`` (its ``DEIMCriterion`` section and
    ``num_classes``) if given, else from :data:`OFFICIAL_CRITERION` (the official ``configs/base/deimv2.yml``).
    ``build_criterion(cfg)`` is what training uses; ``build_criterion(cfg, losses=[...])`` changes one value.

    Explained in notebooks/09_loss.ipynb §5.
    """
    given = {k: v for k, v in locals().items() if k != "cfg" and v is not None}
    kw = {**OFFICIAL_CRITERION, **(_from_config(cfg) if cfg is not None else {}), **given}
    matcher = HungarianMatcher(
        kw["matcher_weight_dict"],
        use_focal_loss=True,
        alpha=kw["matcher_alpha"],
        gamma=kw["matcher_gamma"],
        change_matcher=kw["change_matcher"],
        iou_order_alpha=kw["iou_order_alpha"],
        matcher_change_epoch=kw["matcher_change_epoch"],
    )
    return DEIMCriterion(
        matcher,
        kw["weight_dict"],  # DEIMCriterion keeps its own copies
        kw["losses"],
        alpha=kw["alpha"],
        gamma=kw["gamma"],
        num_classes=kw["num_classes"],
        reg_max=kw["reg_max"],
        boxes_weight_format=kw["boxes_weight_format"],
        mal_alpha=kw["mal_alpha"],
        use_uni_set=kw["use_uni_set"],
    )
