"""The one criterion builder (deimv2.loss.build_criterion): official defaults, values from a config, keywords."""

import pytest

import deimv2
import deimv2.models
import deimv2.models.build
from deimv2.config.loader import VARIANTS, load_config
from deimv2.loss import OFFICIAL_CRITERION, DEIMCriterion, build_criterion


def _settings(crit: DEIMCriterion) -> dict:
    m = crit.matcher
    return {
        "num_classes": crit.num_classes,
        "weight_dict": dict(crit.weight_dict),
        "losses": list(crit.losses),
        "gamma": crit.gamma,
        "alpha": crit.alpha,
        "reg_max": crit.reg_max,
        "use_uni_set": crit.use_uni_set,
        "matcher_weight_dict": {"cost_class": m.cost_class, "cost_bbox": m.cost_bbox, "cost_giou": m.cost_giou},
        "matcher_alpha": m.alpha,
        "matcher_gamma": m.gamma,
        "change_matcher": m.change_matcher,
        "iou_order_alpha": m.iou_order_alpha,
        "matcher_change_epoch": m.matcher_change_epoch,
    }


def test_one_builder_lives_beside_the_trainer_not_in_models():
    assert deimv2.build_criterion is build_criterion
    assert not hasattr(deimv2.models.build, "build_criterion") and not hasattr(deimv2.models, "build_criterion")


def test_no_arguments_gives_the_official_base_recipe():
    got = _settings(build_criterion())
    assert got == {k: v for k, v in OFFICIAL_CRITERION.items() if k not in ("mal_alpha", "boxes_weight_format")}
    assert got["change_matcher"] is True and got["iou_order_alpha"] == 4.0 and got["matcher_change_epoch"] == 45


@pytest.mark.parametrize("variant", ["n", "s", "m", "l", "x"])
def test_official_table_matches_the_official_variant_configs(variant):
    """N/S/M/L/X keep the official base DEIMCriterion and change only the epoch of the matcher switch."""
    cfg = load_config(variant)
    got = _settings(build_criterion(cfg))
    expected = dict(OFFICIAL_CRITERION, matcher_change_epoch=got["matcher_change_epoch"])
    assert got == {k: v for k, v in expected.items() if k not in ("mal_alpha", "boxes_weight_format")}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_config_values_win_over_defaults(variant):
    cfg = load_config(variant, num_classes=3)
    crit = build_criterion(cfg)
    c = cfg.criterion
    assert crit.num_classes == 3 and crit.losses == c.losses and crit.use_uni_set == c.use_uni_set
    assert crit.matcher.matcher_change_epoch == c.matcher.matcher_change_epoch
    if variant in ("atto", "femto", "pico"):
        assert crit.losses == ["mal", "boxes"] and crit.use_uni_set is False
        assert crit.matcher.matcher_change_epoch == 450


def test_keywords_win_over_config():
    cfg = load_config("atto")
    crit = build_criterion(cfg, losses=["mal", "boxes", "local"], use_uni_set=True, matcher_change_epoch=7)
    assert crit.losses == ["mal", "boxes", "local"] and crit.use_uni_set is True
    assert crit.matcher.matcher_change_epoch == 7
    assert crit.num_classes == cfg.num_classes and crit.weight_dict == cfg.criterion.weight_dict


def test_defaults_are_not_shared_mutable_state():
    crit = build_criterion()
    crit.weight_dict["loss_mal"] = 99
    crit.losses.append("vfl")
    assert OFFICIAL_CRITERION["weight_dict"]["loss_mal"] == 1 and "vfl" not in OFFICIAL_CRITERION["losses"]


def test_one_home_for_the_criterion_defaults():
    """build_criterion(), a config without a DEIMCriterion section and the official base YAML all agree: the
    typed sections are the one home of the defaults (DEIMCriterion/HungarianMatcher take theirs from there)."""
    import inspect
    import json
    from pathlib import Path

    from deimv2.config.sections import CriterionConfig, MatcherConfig, section_from_mapping
    from deimv2.loss import HungarianMatcher

    official = json.loads((Path(__file__).parents[1] / "fixtures/official/criterion_base.json").read_text("utf-8"))
    sec = dict(official["DEIMCriterion"])
    matcher = {k: v for k, v in sec.pop("matcher").items() if k != "type"}
    assert section_from_mapping(MatcherConfig, matcher, "DEIMCriterion.matcher", "official") == MatcherConfig()
    assert section_from_mapping(CriterionConfig, sec, "DEIMCriterion", "official", convert=True) == CriterionConfig(
        matcher=MatcherConfig()
    )
    # a config without the section
    raw = load_config("atto").to_dict()
    raw.pop("DEIMCriterion")
    bare = load_config(raw)
    assert bare.criterion == CriterionConfig()
    assert _settings(build_criterion(bare)) == _settings(build_criterion(num_classes=bare.num_classes))
    # the constructors' own defaults
    for cls, section in ((DEIMCriterion, CriterionConfig()), (HungarianMatcher, MatcherConfig())):
        for name, p in inspect.signature(cls.__init__).parameters.items():
            if p.default is not inspect.Parameter.empty and hasattr(section, name) and name != "weight_dict":
                assert p.default == getattr(section, name), f"{cls.__name__}.{name}"
