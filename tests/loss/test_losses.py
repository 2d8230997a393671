"""DEIM loss functions (hand-worked values) and the full DEIMCriterion on fake decoder outputs."""

import math

import pytest
import torch

from deimv2.errors import ConfigError
from deimv2.loss import DEIMCriterion, HungarianMatcher, build_criterion
from deimv2.loss.losses import box_losses, ddf_loss, fgl_loss, focal_loss, mal_loss, vfl_loss

WEIGHTS = {"loss_mal": 1, "loss_bbox": 5, "loss_giou": 2, "loss_fgl": 0.15, "loss_ddf": 1.5}
i64 = lambda *v: torch.tensor(v, dtype=torch.int64)  # noqa: E731


# ----------------------------------------------------------------------------- pure losses
def test_mal_hand_value():
    # B=1, Q=2, C=1. Query 0 matched (class 0, IoU 0.64), logit ln3 -> p 0.75; query 1 unmatched, logit -ln3 -> p 0.25.
    # gamma 1.5: positive target t = 0.64^1.5 = 0.512, weight 1:
    #   BCE = -(0.512 ln 0.75 + 0.488 ln 0.25) = 0.512*0.2876821 + 0.488*1.3862944 = 0.8238049
    # negative: target 0, weight p^1.5 = 0.25^1.5 = 0.125: 0.125 * -ln(0.75) = 0.0359603
    logits = torch.tensor([[[math.log(3.0)], [-math.log(3.0)]]])
    args = (logits, i64(0), i64(0), i64(0), torch.tensor([0.64]))
    assert mal_loss(*args, num_boxes=1.0, gamma=1.5).item() == pytest.approx(0.8238049 + 0.0359603, abs=1e-6)
    # mal_alpha scales only the negative weight; num_boxes divides.
    assert mal_loss(*args, num_boxes=2.0, gamma=1.5, mal_alpha=0.5).item() == pytest.approx(
        (0.8238049 + 0.5 * 0.0359603) / 2, abs=1e-6
    )


def test_mal_gradient_only_through_logits():
    logits = torch.zeros(1, 2, 3, requires_grad=True)
    ious = torch.tensor([0.5], requires_grad=True)
    mal_loss(logits, i64(0), i64(1), i64(2), ious, 1.0, 1.5).backward()
    assert ious.grad is None
    # d BCE/dx = w (sigmoid(x) - t): positive entry w=1, t=0.5^1.5; a negative entry w=0.5^1.5, t=0
    assert logits.grad[0, 1, 2].item() == pytest.approx(0.5 - 0.5**1.5, abs=1e-6)
    assert logits.grad[0, 0, 0].item() == pytest.approx(0.5**1.5 * 0.5, abs=1e-6)


def test_vfl_hand_value():
    # Same setup as MAL with alpha 0.75, gamma 2: positive target = weight = IoU 0.64:
    #   0.64 * -(0.64 ln 0.75 + 0.36 ln 0.25) = 0.64 * (0.1841166 + 0.4990660) = 0.4372369
    # negative weight 0.75 * 0.25^2 = 0.046875: 0.046875 * 0.2876821 = 0.0134851
    logits = torch.tensor([[[math.log(3.0)], [-math.log(3.0)]]])
    value = vfl_loss(logits, i64(0), i64(0), i64(0), torch.tensor([0.64]), 1.0, alpha=0.75, gamma=2.0)
    assert value.item() == pytest.approx(0.4372369 + 0.0134851, abs=1e-6)


def test_focal_hand_value():
    # alpha 0.25, gamma 2. Positive p = 0.75: 0.25 * (1 - 0.75)^2 * -ln 0.75 = 0.25 * 0.0625 * 0.2876821 = 0.0044950
    # negative p = 0.25: 0.75 * 0.25^2 * -ln(1 - 0.25) = 0.75 * 0.0625 * 0.2876821 = 0.0134851
    logits = torch.tensor([[[math.log(3.0)], [-math.log(3.0)]]])
    value = focal_loss(logits, i64(0), i64(0), i64(0), num_boxes=1.0, alpha=0.25, gamma=2.0)
    assert value.item() == pytest.approx(0.0044950 + 0.0134851, abs=1e-6)


def test_box_losses_hand_values():
    src = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.25, 0.25, 0.1, 0.1]])
    tgt = torch.tensor([[0.5, 0.5, 0.2, 0.1], [0.35, 0.25, 0.1, 0.1]])
    # pair 0: L1 = 0.1; IoU = 0.02/0.04 = 0.5, hull = union -> GIoU 0.5 -> 1 - GIoU = 0.5
    # pair 1: L1 = 0.1; x-ranges [0.2,0.3] and [0.3,0.4] touch: IoU 0, hull 0.02 = union -> GIoU 0 -> 1
    l1, giou = box_losses(src, tgt, num_boxes=2.0)
    assert l1.item() == pytest.approx(0.2 / 2, abs=1e-6)
    assert giou.item() == pytest.approx(1.5 / 2, abs=1e-6)
    _, weighted = box_losses(src, tgt, num_boxes=2.0, boxes_weight=torch.tensor([0.5, 1.0]))
    assert weighted.item() == pytest.approx((0.25 + 1.0) / 2, abs=1e-6)


def test_fgl_hand_value():
    # One edge, 5 bins, logits [0,1,2,0,0]: logsumexp = ln(3 + e + e^2) = ln 13.1073379 = 2.5731723.
    # Target bin 1.3 -> left bin 1 (weight_left 0.7), right bin 2 (weight_right 0.3), IoU weight 0.8:
    #   0.8 * (0.7 * (2.5731723 - 1) + 0.3 * (2.5731723 - 2)) = 0.8 * (1.1012206 + 0.1719517) = 1.0185378
    pred = torch.tensor([[0.0, 1.0, 2.0, 0.0, 0.0]])
    value = fgl_loss(pred, torch.tensor([1.3]), torch.tensor([0.3]), torch.tensor([0.7]), torch.tensor([0.8]), 1.0)
    assert value.item() == pytest.approx(1.0185378, abs=1e-5)


def test_ddf_hand_value():
    # T = 5. Student rows uniform (1/3 each). Teacher row 0 = [5 ln2, 0, 0] -> softmax(t/T) = [0.5, 0.25, 0.25];
    # teacher row 1 = [0, 5 ln2, 0] (a permutation: same KL).
    # KL = 0.5 ln(1.5) + 0.5 ln(0.75) = 0.0588915; times T^2 = 1.4722879.
    # Row 0 positive (weight 0.8) -> 1.1778304; row 1 negative (weight 0.5) -> 0.7361440.
    # Balance with num_pos 2, num_neg 1: (1.1778304 * 2 + 0.7361440) / 3 = 1.0306016
    l2 = 5 * math.log(2.0)
    pred = torch.zeros(2, 3, requires_grad=True)
    teacher = torch.tensor([[l2, 0.0, 0.0], [0.0, l2, 0.0]], requires_grad=True)
    value = ddf_loss(
        pred, teacher, torch.tensor([0.8, 0.5]), torch.tensor([True, False]), torch.tensor(2.0), torch.tensor(1.0)
    )
    assert value.item() == pytest.approx(1.0306016, abs=1e-6)
    value.backward()
    assert teacher.grad is None and pred.grad is not None
    # identical student and teacher -> 0
    same = ddf_loss(
        teacher.detach(),
        teacher.detach(),
        torch.ones(2),
        torch.tensor([True, False]),
        torch.tensor(1.0),
        torch.tensor(1.0),
    )
    assert abs(same.item()) < 1e-6


# ----------------------------------------------------------------------------- criterion, hand case
def test_criterion_fgl_one_box_end_to_end():
    # One query whose reference box and prediction equal the target. Every edge lies exactly on the
    # half-box, i.e. offset 0 = W(16) with reg_max 32 -> target bin 16, weight_left 1, weight_right 0; IoU = 1.
    # Zero corner logits -> -log_softmax = ln 33 per edge; 4 edges / num_boxes 1 -> 4 ln 33 = 13.9860302.
    box = torch.tensor([[[0.4, 0.6, 0.3, 0.2]]])
    outputs = {
        "pred_logits": torch.zeros(1, 1, 2),
        "pred_boxes": box,
        "pred_corners": torch.zeros(1, 1, 4 * 33),
        "ref_points": box.clone(),
        "up": torch.tensor([0.5]),
        "reg_scale": torch.tensor([4.0]),
    }
    targets = [{"labels": i64(1), "boxes": box[0]}]
    matcher = HungarianMatcher({"cost_class": 2, "cost_bbox": 5, "cost_giou": 2})
    crit = DEIMCriterion(matcher, {"loss_fgl": 1.0}, ["local"], num_classes=2)
    losses = crit(outputs, targets)
    assert set(losses) == {"loss_fgl"}
    assert losses["loss_fgl"].item() == pytest.approx(4 * math.log(33), abs=1e-4)


# ----------------------------------------------------------------------------- criterion, fake decoder outputs
def fake_outputs(num_layers, bs=2, queries=12, classes=80, reg_max=32, dn_group=2, num_gts=(3, 1), seed=0):
    """Random train-mode decoder dict in the official layout (leaf tensors requiring grad)."""
    g = torch.Generator().manual_seed(seed)
    leaf = lambda *shape: torch.randn(*shape, generator=g).requires_grad_(True)  # noqa: E731

    def boxes(n):
        raw = torch.rand(bs, n, 4, generator=g)
        return torch.cat([raw[..., :2] * 0.6 + 0.2, raw[..., 2:] * 0.3 + 0.05], -1).requires_grad_(True)

    def layer(n, corners=True):
        out = {"pred_logits": leaf(bs, n, classes), "pred_boxes": boxes(n)}
        if corners:
            out["pred_corners"] = leaf(bs, n, 4 * (reg_max + 1))
            out["ref_points"] = boxes(n).detach()
        return out

    max_gt = max(num_gts)
    n_dn = 2 * max_gt * dn_group
    layers = [layer(queries) for _ in range(num_layers)]
    dn_layers = [layer(n_dn) for _ in range(num_layers)]
    for d in dn_layers:  # all denoising layers share the initial reference boxes
        d["ref_points"] = dn_layers[0]["ref_points"]
    for d in layers:
        d["ref_points"] = layers[0]["ref_points"]
    out = dict(layers[-1], up=torch.tensor([0.5]), reg_scale=torch.tensor([4.0]))
    out["aux_outputs"] = [
        dict(d, teacher_corners=layers[-1]["pred_corners"], teacher_logits=layers[-1]["pred_logits"])
        for d in layers[:-1]
    ]
    out["pre_outputs"] = layer(queries, corners=False)
    out["enc_aux_outputs"] = [layer(queries, corners=False)]
    out["enc_meta"] = {"class_agnostic": False}
    out["dn_outputs"] = [
        dict(d, teacher_corners=dn_layers[-1]["pred_corners"], teacher_logits=dn_layers[-1]["pred_logits"])
        for d in dn_layers
    ]
    out["dn_pre_outputs"] = layer(n_dn, corners=False)
    positive = [torch.cat([torch.arange(n) + k * 2 * max_gt for k in range(dn_group)]) for n in num_gts]
    out["dn_meta"] = {"dn_positive_idx": positive, "dn_num_group": dn_group, "dn_num_split": [n_dn, queries]}
    targets = []
    for n in num_gts:
        raw = torch.rand(n, 4, generator=g)
        targets.append(
            {
                "labels": torch.randint(0, classes, (n,), generator=g),
                "boxes": torch.cat([raw[:, :2] * 0.6 + 0.2, raw[:, 2:] * 0.3 + 0.05], -1),
            }
        )
    return out, targets


def expected_keys(names, num_layers, local):
    """Official key set: final layer, _aux_i, _pre, _enc_0, _dn_i, _dn_pre (DDF on aux/dn layers but the last)."""
    keys = set(names)
    for i in range(num_layers - 1):
        keys |= {f"{k}_aux_{i}" for k in names} | ({f"loss_ddf_aux_{i}"} if local else set())
    for i in range(num_layers):
        keys |= {f"{k}_dn_{i}" for k in names}
        if local and i < num_layers - 1:
            keys.add(f"loss_ddf_dn_{i}")
    box_cls = [k for k in names if k != "loss_fgl"]
    keys |= {f"{k}_pre" for k in box_cls} | {f"{k}_enc_0" for k in box_cls} | {f"{k}_dn_pre" for k in box_cls}
    return keys


@pytest.mark.parametrize("variant", ["atto", "s"])
@pytest.mark.parametrize("epoch", [0, 200])
def test_full_criterion_keys_finite_backward(variant, epoch):
    if variant == "atto":
        crit = build_criterion(losses=["mal", "boxes"], use_uni_set=False, matcher_change_epoch=100)
        num_layers, names = 3, ["loss_mal", "loss_bbox", "loss_giou"]
    else:
        crit = build_criterion(losses=["mal", "boxes", "local"], use_uni_set=True, matcher_change_epoch=100)
        num_layers, names = 4, ["loss_mal", "loss_bbox", "loss_giou", "loss_fgl"]
    outputs, targets = fake_outputs(num_layers)
    losses = crit(outputs, targets, epoch=epoch, step=3, global_step=10)
    assert set(losses) == expected_keys(names, num_layers, variant == "s")
    assert len(losses) == (27 if variant == "atto" else 47)  # term counts of the official code
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert torch.isfinite(outputs["pred_logits"].grad).all() and outputs["pred_logits"].grad.abs().sum() > 0
    assert outputs["aux_outputs"][0]["pred_boxes"].grad.abs().sum() > 0
    if variant == "s":
        assert outputs["aux_outputs"][0]["pred_corners"].grad.abs().sum() > 0
    assert "is_dn" not in outputs["dn_outputs"][0]  # inputs are not modified


def test_criterion_weights_and_uni_set_normalizer():
    outputs, targets = fake_outputs(3, seed=1)
    weights = dict(WEIGHTS, loss_bbox=1.0)
    crit = build_criterion(weight_dict=weights, losses=["mal", "boxes"], use_uni_set=True)
    base = crit(outputs, targets)
    doubled = build_criterion(weight_dict=dict(weights, loss_bbox=2.0), losses=["mal", "boxes"], use_uni_set=True)(
        outputs, targets
    )
    assert doubled["loss_bbox_aux_1"].item() == pytest.approx(2 * base["loss_bbox_aux_1"].item(), rel=1e-6)
    assert doubled["loss_giou"].item() == pytest.approx(base["loss_giou"].item(), rel=1e-6)
    # the denoising L1 is normalized by num_boxes * dn_num_group = 4 * 2 over 8 matched denoising queries
    dn = outputs["dn_outputs"][1]
    idx = outputs["dn_meta"]["dn_positive_idx"]
    src = torch.cat([dn["pred_boxes"][i, idx[i]] for i in range(2)])
    tgt = torch.cat([t["boxes"].repeat(2, 1) for t in targets])
    assert base["loss_bbox_dn_1"].item() == pytest.approx((src - tgt).abs().sum().item() / 8, rel=1e-5)


def test_empty_targets_give_finite_losses():
    outputs, targets = fake_outputs(3, num_gts=(2, 0), seed=2)
    crit = build_criterion(losses=["mal", "boxes", "local"])
    losses = crit(outputs, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


def test_bad_config_raises_chinese_errors():
    matcher = HungarianMatcher({"cost_class": 2, "cost_bbox": 5, "cost_giou": 2})
    with pytest.raises(ConfigError, match="losses"):
        DEIMCriterion(matcher, WEIGHTS, ["mal", "l2"])
    outputs, targets = fake_outputs(2, classes=80)
    with pytest.raises(ConfigError, match="num_classes"):
        DEIMCriterion(matcher, WEIGHTS, ["mal"], num_classes=20)(outputs, targets)
