"""Facts that the README, docs and notebooks state about DEIMv2, checked against the shipped YAML configs.

If one of these fails after a config change, update the statements in notebooks/03_config.ipynb,
07–09 and README.md together with the test.
"""

import pytest
import torch

from deimv2.config.loader import VARIANTS, load_config
from deimv2.models.build import build_backbone

SMALL = ("atto", "femto", "pico")
HGNET = ("atto", "femto", "pico", "n")
DINO = ("s", "m", "l", "x")


def test_the_eight_variants():
    assert tuple(VARIANTS) == HGNET + DINO


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_local_losses_go_lsd_everywhere_but_atto_femto_pico(variant):
    c = load_config(variant).criterion
    uses_local = variant not in SMALL  # N has FGL/DDF too
    assert ("local" in c.losses) is uses_local
    assert c.use_uni_set is uses_local
    assert "mal" in c.losses and "boxes" in c.losses
    assert {"loss_fgl", "loss_ddf"} <= set(c.weight_dict)


@pytest.mark.parametrize("variant", HGNET)
def test_hgnet_backbones_levels(variant):
    cfg = load_config(variant)
    backbone = build_backbone(cfg).eval()
    with torch.no_grad():
        feats = backbone(torch.rand(1, 3, 64, 64))
    strides = [64 // f.shape[-1] for f in feats]
    # Atto/Femto/Pico: one stride-16 map (LiteEncoder builds stride 32); N: strides 16 and 32
    assert strides == ([16] if variant in SMALL else [16, 32])
    assert cfg.model.encoder_type == ("LiteEncoder" if variant in SMALL else "HybridEncoder")


def test_dinov3_backbone_returns_three_levels():
    backbone = build_backbone(load_config("s")).eval()
    with torch.no_grad():
        feats = backbone(torch.rand(1, 3, 64, 64))
    assert [64 // f.shape[-1] for f in feats] == [8, 16, 32]


@pytest.mark.parametrize("variant", DINO)
def test_dinov3_variants_backbone_names_and_normalisation(variant):
    cfg = load_config(variant)
    assert cfg.model.backbone_type == "DINOv3STAs"
    name = cfg.model.backbone["name"]
    # S uses the distilled ViT-Tiny; DINOv3 ViT-S/16 is L's backbone (README's table)
    assert name == {"s": "vit_tiny", "m": "vit_tinyplus", "l": "dinov3_vits16", "x": "dinov3_vits16plus"}[variant]
    assert len(cfg.model.backbone["interaction_indexes"]) == 3
    assert cfg.input_mean == pytest.approx([0.485, 0.456, 0.406]) and cfg.input_std == pytest.approx(
        [0.229, 0.224, 0.225]
    )


@pytest.mark.parametrize("variant", HGNET)
def test_hgnet_variants_are_not_normalised(variant):
    assert load_config(variant).input_mean is None


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_three_late_milestones_are_separate(variant):
    """Strong augmentation stops at the last policy epoch; the best-weights reload and EMA restart happen at
    collate stop_epoch = epochs - no_aug_epoch; no_aug_epoch itself only holds the LR at its minimum."""
    cfg = load_config(variant)
    s, d = cfg.schedule, cfg.data
    stop = d.collate["stop_epoch"]
    assert stop == s.epochs - s.no_aug_epoch
    assert d.policy["epoch"][-1] <= stop
    if variant == "atto":  # the config 03_config.ipynb walks through
        assert d.policy["epoch"][-1] < stop
