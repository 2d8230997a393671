"""DEIMv2 decoder: official state_dict layout, output structure, denoising, deploy, post-processing."""

import json
import math
from pathlib import Path

import pytest
import torch

from deimv2.models.decoder import DEIMTransformer
from deimv2.models.decoder_layers import RMSNorm, deformable_sample
from deimv2.models.denoising import get_contrastive_denoising_training_group
from deimv2.models.postprocess import MSCOCO_LABEL_TO_CATEGORY, PostProcessor

REF = Path(__file__).resolve().parents[1] / "fixtures" / "official" / "state_dict"  # benchmarks/make_golden.py

_COMMON = dict(
    num_classes=80,
    num_denoising=100,
    label_noise_ratio=0.5,
    box_noise_scale=1.0,
    reg_max=32,
    reg_scale=4,
    layer_scale=1,
    cross_attn_method="default",
    query_select_method="default",
    activation="silu",
    mlp_act="silu",
    eval_idx=-1,
    eval_spatial_size=[640, 640],
)
_LITE = dict(
    feat_strides=[16, 32], num_levels=2, num_layers=3, share_bbox_head=True, use_gateway=False, num_points=[4, 2]
)
_VIT = dict(feat_strides=[8, 16, 32], num_levels=3, num_points=[3, 6, 3], num_queries=300)
# merged official configs (base/deimv2.yml + configs/deimv2/<variant>.yml), decoder section
VARIANTS = {
    "atto": dict(
        _LITE, feat_channels=[64, 64], hidden_dim=64, num_queries=100, dim_feedforward=160, eval_spatial_size=[320, 320]
    ),
    "femto": dict(
        _LITE, feat_channels=[96, 96], hidden_dim=96, num_queries=150, dim_feedforward=256, eval_spatial_size=[416, 416]
    ),
    "pico": dict(_LITE, feat_channels=[112, 112], hidden_dim=112, num_queries=200, dim_feedforward=320),
    "n": dict(
        feat_strides=[16, 32],
        num_levels=2,
        num_layers=3,
        num_points=[6, 6],
        feat_channels=[128, 128],
        hidden_dim=128,
        num_queries=300,
        dim_feedforward=512,
    ),
    "s": dict(_VIT, feat_channels=[192] * 3, hidden_dim=192, dim_feedforward=512, num_layers=4),
    "m": dict(_VIT, feat_channels=[256] * 3, hidden_dim=256, dim_feedforward=512, num_layers=4),
    "l": dict(_VIT, feat_channels=[224] * 3, hidden_dim=224, dim_feedforward=1792, num_layers=4),
    "x": dict(_VIT, feat_channels=[256] * 3, hidden_dim=256, dim_feedforward=2048, num_layers=6),
}


def build(variant, **over):
    kw = dict(_COMMON)
    kw.update(VARIANTS[variant])
    kw.update(over)
    return DEIMTransformer(**kw)


def feats_for(dec, size, bs=2):
    return [torch.randn(bs, dec.hidden_dim, size // s, size // s) for s in dec.feat_strides]


def small(**over):
    """A tiny 2-level decoder (fast tests)."""
    kw = dict(
        num_classes=5,
        hidden_dim=32,
        num_queries=12,
        feat_channels=[32, 32],
        feat_strides=[16, 32],
        num_levels=2,
        num_points=[4, 2],
        nhead=4,
        num_layers=3,
        dim_feedforward=64,
        num_denoising=10,
        eval_spatial_size=[64, 64],
        activation="silu",
        mlp_act="silu",
        reg_max=8,
    )
    kw.update(over)
    return DEIMTransformer(**kw)


def _perturb(model, scale=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * scale)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_state_dict_matches_official(variant):
    ref = json.loads((REF / f"{variant}.json").read_text(encoding="utf-8"))["state_dict"]
    expected = {k[len("decoder.") :]: v for k, v in ref.items() if k.startswith("decoder.")}
    ours = {k: list(t.shape) for k, t in build(variant).state_dict().items()}
    assert ours == expected


def test_shared_parameters_and_heads():
    dec = build("atto")
    assert dec.up is dec.decoder.up and dec.reg_scale is dec.decoder.reg_scale
    assert not dec.up.requires_grad and dec.up.item() == 0.5 and dec.reg_scale.item() == 4.0
    assert dec.dec_bbox_head[0] is dec.dec_bbox_head[1] is dec.dec_bbox_head[2]
    assert dec.dec_score_head[0] is not dec.dec_score_head[1]
    keys = dec.state_dict().keys()
    assert {"up", "decoder.up", "anchors", "valid_mask", "dec_bbox_head.2.layers.0.weight"} <= set(keys)
    n = build("n")
    assert n.dec_bbox_head[0] is not n.dec_bbox_head[1]
    assert hasattr(n.decoder.layers[0], "gateway") and not hasattr(dec.decoder.layers[0], "gateway")


def test_anchor_buffers_hand_values():
    dec = build("atto")  # 320 / 16 = 20, 320 / 32 = 10 -> 400 + 100 anchors
    assert dec.anchors.shape == (1, 500, 4) and bool(dec.valid_mask.all())

    # first cell of level 0: centre (0.5/20, 0.5/20) = 0.025, size 0.05; level 1 size 0.1
    def logit(p):
        return math.log(p / (1 - p))

    assert torch.allclose(dec.anchors[0, 0], torch.tensor([logit(0.025)] * 2 + [logit(0.05)] * 2))
    assert torch.allclose(dec.anchors[0, 400, 2:], torch.tensor([logit(0.1)] * 2))
    # a 1x1 level 5 map would have size 0.05 * 32 = 1.6 > 1 - eps -> invalid, anchor = inf
    anchors, valid = dec._generate_anchors([[2, 2], [1, 1], [1, 1], [1, 1], [1, 1], [1, 1]])
    assert valid[0, :4].all() and not valid[0, -1].item() and torch.isinf(anchors[0, -1]).all()
    assert torch.allclose(anchors[0, 3], torch.tensor([logit(0.75), logit(0.75), logit(0.05), logit(0.05)]))


def test_rmsnorm_and_point_sampling_hand_values():
    norm = RMSNorm(2)
    # mean of squares of (3, 4) is 12.5
    assert torch.allclose(norm(torch.tensor([[3.0, 4.0]])), torch.tensor([[3.0, 4.0]]) / math.sqrt(12.5 + 1e-6))
    # value map v[y, x] = 10 y + x on a 4x4 grid, one head of 1 channel, batch 1
    value = (10 * torch.arange(4.0).reshape(4, 1) + torch.arange(4.0)).reshape(1, 1, 4, 4)
    # point 0 at the centre of pixel (x=1, y=2) -> 21; point 1 halfway between pixels (2,0) and (3,0) -> 2.5
    locs = torch.tensor([[1.5 / 4, 2.5 / 4], [3.0 / 4, 0.5 / 4]]).reshape(1, 1, 1, 2, 2)
    weights = torch.tensor([0.25, 0.75]).reshape(1, 1, 1, 2)
    out = deformable_sample([value], [[4, 4]], locs, weights, [2])
    assert out.shape == (1, 1, 1)
    assert math.isclose(out.item(), 0.25 * 21 + 0.75 * 2.5, rel_tol=1e-6)


def test_eval_output_structure():
    dec = small().eval()
    _perturb(dec)
    with torch.no_grad():
        out = dec(feats_for(dec, 64))
    assert set(out) == {"pred_logits", "pred_boxes"}
    assert out["pred_logits"].shape == (2, 12, 5) and out["pred_boxes"].shape == (2, 12, 4)
    assert torch.isfinite(out["pred_boxes"]).all()
    # other input sizes than eval_spatial_size work too (anchors are generated on the fly)
    with torch.no_grad():
        assert dec(feats_for(dec, 96))["pred_boxes"].shape == (2, 12, 4)


def _targets():
    return [
        {"labels": torch.tensor([1, 3]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.3, 0.6, 0.1, 0.1]])},
        {"labels": torch.tensor([4]), "boxes": torch.tensor([[0.4, 0.4, 0.5, 0.5]])},
    ]


def test_train_output_structure_and_grad():
    dec = small().train()
    _perturb(dec)
    torch.manual_seed(0)
    out = dec(feats_for(dec, 64), _targets())
    assert set(out) == {
        "pred_logits",
        "pred_boxes",
        "pred_corners",
        "ref_points",
        "up",
        "reg_scale",
        "aux_outputs",
        "enc_aux_outputs",
        "pre_outputs",
        "enc_meta",
        "dn_outputs",
        "dn_pre_outputs",
        "dn_meta",
    }
    assert out["pred_logits"].shape == (2, 12, 5) and out["pred_corners"].shape == (2, 12, 4 * 9)
    assert out["up"] is dec.up and out["enc_meta"] == {"class_agnostic": False}
    layer_keys = {"pred_logits", "pred_boxes", "pred_corners", "ref_points", "teacher_corners", "teacher_logits"}
    assert len(out["aux_outputs"]) == 2 and all(set(a) == layer_keys for a in out["aux_outputs"])
    assert out["aux_outputs"][0]["teacher_corners"] is out["pred_corners"]
    assert len(out["enc_aux_outputs"]) == 1 and set(out["enc_aux_outputs"][0]) == {"pred_logits", "pred_boxes"}
    meta = out["dn_meta"]
    # max 2 gts -> 10 // 2 = 5 groups of 2*2 queries = 20 denoising queries
    assert meta["dn_num_group"] == 5 and meta["dn_num_split"] == [20, 12]
    assert len(out["dn_outputs"]) == 3 and out["dn_outputs"][-1]["pred_boxes"].shape == (2, 20, 4)
    assert out["dn_pre_outputs"]["pred_logits"].shape == (2, 20, 5)
    loss = out["pred_logits"].sum() + out["pred_boxes"].sum() + out["dn_outputs"][0]["pred_corners"].sum()
    loss.backward()
    assert dec.dec_bbox_head[0].layers[0].weight.grad is not None and dec.up.grad is None
    # caches filled under inference_mode (first use) must not break a later training step
    fresh = small().eval()
    with torch.inference_mode():
        fresh(feats_for(fresh, 96))
    fresh.train()
    fresh(feats_for(fresh, 96), _targets())["pred_boxes"].sum().backward()
    # no targets -> no denoising outputs
    out = dec(feats_for(dec, 64))
    assert "dn_meta" not in out and out["pred_logits"].shape == (2, 12, 5)


def test_denoising_group_hand_checked():
    emb = torch.nn.Embedding(6, 4, padding_idx=5)
    targets = [
        {"labels": torch.tensor([2]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])},
        {"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)},
    ]
    embeds, boxes_unact, mask, meta = get_contrastive_denoising_training_group(
        targets, 5, 3, emb, num_denoising=2, label_noise_ratio=0.0, box_noise_scale=0.0
    )
    # max_gt 1 -> 2 groups, each [positive, negative] -> 4 denoising queries + 3 matching queries
    assert meta["dn_num_group"] == 2 and meta["dn_num_split"] == [4, 3]
    assert [t.tolist() for t in meta["dn_positive_idx"]] == [[0, 2], []]
    x = True
    expected = [
        [0, 0, x, x, 0, 0, 0],
        [0, 0, x, x, 0, 0, 0],
        [x, x, 0, 0, 0, 0, 0],
        [x, x, 0, 0, 0, 0, 0],
        [x, x, x, x, 0, 0, 0],
        [x, x, x, x, 0, 0, 0],
        [x, x, x, x, 0, 0, 0],
    ]
    assert mask.tolist() == [[bool(v) for v in row] for row in expected]
    # no noise: labels and boxes are copied; the empty image is padded with class 5 and a zero box
    assert torch.equal(embeds[0, 1], emb.weight[2]) and torch.equal(embeds[1, 0], emb.weight[5])
    assert torch.allclose(torch.sigmoid(boxes_unact[0, 3]), torch.tensor([0.5, 0.5, 0.2, 0.2]), atol=1e-6)
    # with box noise, each positive edge moves by < half the size; negatives move by 0.5x..1x the size
    # before clipping (they may flip, so only their average shift is checked)
    targets[0]["boxes"] = torch.tensor([[0.5, 0.5, 0.4, 0.4]])
    torch.manual_seed(0)
    _, boxes_unact, _, _ = get_contrastive_denoising_training_group(targets, 5, 3, emb, 20, 0.0, 1.0)
    b = torch.sigmoid(boxes_unact[0])
    edges = torch.cat([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], 1)
    shift = (edges - torch.tensor([0.3, 0.3, 0.7, 0.7])).abs()
    assert (shift[0::2] <= 0.2 + 1e-5).all() and shift[1::2].mean() > shift[0::2].mean()


def test_deploy_keeps_outputs():
    for dec in (small(), small(use_gateway=False, share_bbox_head=True, num_layers=4, eval_idx=2)):
        _perturb(dec, seed=1)
        dec.eval()
        feats = feats_for(dec, 64)
        with torch.no_grad():
            before = dec(feats)
            n_before = sum(p.numel() for p in dec.parameters())
            dec.deploy()
            after = dec(feats)
        assert not dec.training
        assert isinstance(dec.dec_score_head[0], torch.nn.Identity)
        assert isinstance(dec.decoder.lqe_layers[0], torch.nn.Identity)
        assert len(dec.decoder.layers) == dec.eval_idx + 1
        assert sum(p.numel() for p in dec.parameters()) < n_before
        for key in ("pred_logits", "pred_boxes"):
            assert torch.allclose(before[key], after[key], atol=1e-5), key


def test_postprocessor_box_scaling_hand_checked():
    # one image, 2 queries, 2 classes; image size (w, h) = (200, 100)
    logits = torch.tensor([[[0.0, 2.0], [-1.0, -3.0]]])
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.25, 0.75, 0.5, 0.5]]])
    post = PostProcessor(num_classes=2, num_top_queries=300)
    res = post({"pred_logits": logits, "pred_boxes": boxes}, torch.tensor([[200.0, 100.0]]))
    assert len(res) == 1
    r = res[0]
    # k = min(300, 2 queries * 2 classes) = 4; order by sigmoid: 2.0 (q0,c1), 0.0 (q0,c0), -1 (q1,c0), -3 (q1,c1)
    assert r["labels"].tolist() == [1, 0, 0, 1]
    assert torch.allclose(r["scores"], torch.sigmoid(torch.tensor([2.0, 0.0, -1.0, -3.0])))
    # q0: x 0.4..0.6 -> 80..120, y 0.3..0.7 -> 30..70; q1: x 0..0.5 -> 0..100, y 0.5..1 -> 50..100
    q0, q1 = [80.0, 30.0, 120.0, 70.0], [0.0, 50.0, 100.0, 100.0]
    assert torch.allclose(r["boxes"], torch.tensor([q0, q0, q1, q1]))
    labels, boxes_d, scores = post.deploy()(
        {"pred_logits": logits, "pred_boxes": boxes}, torch.tensor([[200.0, 100.0]])
    )
    assert labels.shape == (1, 4) and boxes_d.shape == (1, 4, 4) and torch.allclose(boxes_d[0], r["boxes"])


def test_postprocessor_topk_and_coco_remap():
    logits = torch.randn(3, 5, 80)
    boxes = torch.rand(3, 5, 4)
    sizes = torch.tensor([[640.0, 480.0]] * 3)
    res = PostProcessor(num_classes=80, num_top_queries=300)({"pred_logits": logits, "pred_boxes": boxes}, sizes)
    assert len(res) == 3 and res[0]["scores"].shape == (300,)
    assert (res[0]["scores"][:-1] >= res[0]["scores"][1:]).all()
    remapped = PostProcessor(num_top_queries=300, remap_mscoco_category=True)(
        {"pred_logits": logits, "pred_boxes": boxes}, sizes
    )
    assert torch.equal(remapped[1]["boxes"], res[1]["boxes"])
    assert remapped[1]["labels"].tolist() == [MSCOCO_LABEL_TO_CATEGORY[i] for i in res[1]["labels"].tolist()]
    assert len(MSCOCO_LABEL_TO_CATEGORY) == 80 and MSCOCO_LABEL_TO_CATEGORY[11] == 13
    assert MSCOCO_LABEL_TO_CATEGORY[79] == 90 and 12 not in MSCOCO_LABEL_TO_CATEGORY.values()


def test_bad_config_values_raise_config_error():
    from deimv2.errors import ConfigError

    with pytest.raises(ConfigError):
        small(layer_scale=2)
    with pytest.raises(ConfigError):
        small(query_select_method="top")
    with pytest.raises(ConfigError):
        PostProcessor(num_classes=91, remap_mscoco_category=True)
