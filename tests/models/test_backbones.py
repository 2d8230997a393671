"""Backbones: official key/shape layout, parameter counts, hand-worked numerics, weight loading."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from deimv2.errors import ConfigError, WeightsError
from deimv2.models.hgnetv2 import FrozenBatchNorm2d, HGNetv2
from deimv2.models.sta import DINOv3STAs
from deimv2.models.vit import DINOv3ViT, MaskedBiasLinear, RopeEmbedding, ViTTiny, _apply_rope
from deimv2.weights.load import load_backbone_weights

torch.set_num_threads(1)

REF = Path(__file__).resolve().parents[1] / "fixtures" / "official" / "state_dict"  # benchmarks/make_golden.py

# Backbone kwargs of the 8 official DEIMv2 COCO configs (configs/deimv2/*.yml merged with base/deimv2.yml).
HG = dict(freeze_at=-1, freeze_norm=False, use_lab=True)
VARIANTS = {
    "atto": (HGNetv2, dict(name="Atto", return_idx=[2], **HG)),
    "femto": (HGNetv2, dict(name="Femto", return_idx=[2], **HG)),
    "pico": (HGNetv2, dict(name="Pico", return_idx=[2], **HG)),
    "n": (HGNetv2, dict(name="B0", return_idx=[2, 3], **HG)),
    "s": (DINOv3STAs, dict(name="vit_tiny", embed_dim=192, num_heads=3, interaction_indexes=[3, 7, 11])),
    "m": (DINOv3STAs, dict(name="vit_tinyplus", embed_dim=256, num_heads=4, interaction_indexes=[3, 7, 11])),
    "l": (DINOv3STAs, dict(name="dinov3_vits16", interaction_indexes=[5, 8, 11], conv_inplane=32, hidden_dim=224)),
    "x": (DINOv3STAs, dict(name="dinov3_vits16plus", interaction_indexes=[5, 8, 11], conv_inplane=64, hidden_dim=256)),
}
# (channels, strides) of the returned maps
OUTPUTS = {
    "atto": ([256], [16]),
    "femto": ([512], [16]),
    "pico": ([512], [16]),
    "n": ([512, 1024], [16, 32]),
    "s": ([192] * 3, [8, 16, 32]),
    "m": ([256] * 3, [8, 16, 32]),
    "l": ([224] * 3, [8, 16, 32]),
    "x": ([256] * 3, [8, 16, 32]),
}


def _build(variant):
    cls, kw = VARIANTS[variant]
    return cls(**kw)


def _nparams(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_state_dict_matches_official(variant):
    ref = json.loads((REF / f"{variant}.json").read_text(encoding="utf-8"))["state_dict"]
    ref = {k[len("backbone.") :]: v for k, v in ref.items() if k.startswith("backbone.")}
    ours = {k: list(v.shape) for k, v in _build(variant).state_dict().items()}
    assert list(ours) == list(ref)  # same keys, same order
    assert ours == ref


@pytest.mark.parametrize(
    "vit,count",
    [
        (lambda: ViTTiny(192, 3), 5_486_208),
        (lambda: ViTTiny(256, 4), 9_674_240),
        (lambda: DINOv3ViT("dinov3_vits16"), 21_601_152),
        (lambda: DINOv3ViT("dinov3_vits16plus"), 28_697_472),
    ],
)
def test_vit_param_counts(vit, count):
    assert _nparams(vit()) == count


def test_dinov3_key_counts_and_bias_mask_finite():
    for name, nkeys in (("dinov3_vits16", 188), ("dinov3_vits16plus", 212)):
        sd = DINOv3ViT(name).state_dict()
        assert len(sd) == nkeys
        mask = sd["blocks.0.attn.qkv.bias_mask"]
        assert mask.tolist() == [1.0] * 384 + [0.0] * 384 + [1.0] * 384
    assert len(ViTTiny(192, 3)._model.state_dict()) == 148


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_random_init_outputs(variant):
    model = _build(variant).eval()
    chans, strides = OUTPUTS[variant]
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        outs = model(x)
    assert [o.shape[1] for o in outs] == chans
    assert [(64 // o.shape[2], 96 // o.shape[3]) for o in outs] == [(s, s) for s in strides]
    assert model.out_channels == chans and model.out_strides == strides
    assert all(torch.isfinite(o).all() for o in outs)


def test_train_mode_runs_with_syncbn_on_cpu():
    model = _build("s").train()
    outs = model(torch.randn(2, 3, 64, 64))
    sum(o.square().mean() for o in outs).backward()
    assert model.norms[0].num_batches_tracked.item() == 1
    assert model.dinov3._model.blocks[0].attn.qkv.weight.grad is not None


# ---------------------------------------------------------------- hand-worked numerics


def test_frozen_batchnorm_hand_value():
    bn = FrozenBatchNorm2d(1)
    bn.weight.fill_(2.0)
    bn.bias.fill_(1.0)
    bn.running_mean.fill_(3.0)
    bn.running_var.fill_(4.0 - bn.eps)
    y = bn(torch.full((1, 1, 1, 1), 5.0))
    assert y.item() == pytest.approx((5 - 3) / 2 * 2 + 1)  # 3
    # official-compatible loading: num_batches_tracked is dropped
    bn.load_state_dict({**bn.state_dict(), "num_batches_tracked": torch.tensor(7)})


def test_rope_periods_and_tables_hand_values():
    rope = RopeEmbedding(head_dim=64, base=100.0)
    assert rope.periods[0].item() == 1.0
    assert rope.periods[8].item() == pytest.approx(10.0)  # 100 ** (16 / 32)
    # 1 x 4 grid, 1 prefix token: x coords are -0.75, -0.25, 0.25, 0.75; y coord 0
    sin, cos = rope(1, 4, n_prefix=1)
    assert sin.shape == cos.shape == (5, 64)
    assert torch.equal(sin[0], torch.zeros(64)) and torch.equal(cos[0], torch.ones(64))
    # column 16 = first x-angle (period 1) of the second half: 2*pi*(-0.25)/1 = -pi/2
    assert cos[2, 16].item() == pytest.approx(0.0, abs=1e-6)
    assert sin[2, 48].item() == pytest.approx(-1.0)  # second half: +sin
    assert sin[2, 16].item() == pytest.approx(1.0)  # first half carries -sin
    assert torch.allclose(cos[1:, :16], torch.ones(4, 16))  # y angle is 0 for all tokens


def test_apply_rope_rotates_pairs():
    # head_dim 4: pairs (0, 2) rotated by the y angle, (1, 3) by the x angle.
    rope = RopeEmbedding(head_dim=4, base=100.0)  # periods = [1]
    sin, cos = rope(1, 4, n_prefix=1)
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).expand(5, 4)
    y = _apply_rope(x, sin, cos)
    assert torch.equal(y[0], x[0])  # prefix (cls) token untouched
    # token 2: x angle -pi/2 -> (x1, x3) = (2, 4) becomes (x1 cos - x3 sin, x3 cos + x1 sin) = (4, -2)
    assert torch.allclose(y[2], torch.tensor([1.0, 4.0, 3.0, -2.0]), atol=1e-6)
    # token 1: x angle -1.5 pi -> (x1, x3) becomes (-4, 2)
    assert torch.allclose(y[1], torch.tensor([1.0, -4.0, 3.0, 2.0]), atol=1e-5)


def test_rope_train_rescale_range():
    rope = RopeEmbedding(head_dim=8, base=100.0, rescale_coords=2.0, dtype=torch.float32)  # periods [1, 10]

    # 1 x 2 grid, x coords -0.5 / +0.5; column 3 = x angle with period 10: 2*pi*(+-0.5)*r/10
    def scale(sin, cos):
        return abs(math.atan2(sin[1, 7].item(), cos[1, 7].item())) * 10 / math.pi

    rope.eval()
    assert scale(*rope(1, 2, 0)) == pytest.approx(1.0)
    rope.train()
    torch.manual_seed(0)
    rs = [scale(*rope(1, 2, 0)) for _ in range(20)]
    assert all(0.5 - 1e-6 <= r <= 2.0 + 1e-6 for r in rs)
    assert len({round(r, 6) for r in rs}) == 20  # a new draw per call
    assert min(rs) < 1.0 < max(rs)


def test_masked_bias_linear_hides_k_bias():
    lin = MaskedBiasLinear(2, 6)
    torch.nn.init.zeros_(lin.weight)
    torch.nn.init.constant_(lin.bias, 5.0)
    assert lin(torch.randn(1, 2)).tolist() == [[5.0, 5.0, 0.0, 0.0, 5.0, 5.0]]


def test_vit_tiny_returns_unnormalized_patch_tokens():
    vit = ViTTiny(192, 3, return_layers=[0]).eval()
    torch.nn.init.zeros_(vit._model.blocks[0].attn.proj.weight)
    torch.nn.init.zeros_(vit._model.blocks[0].attn.proj.bias)
    torch.nn.init.zeros_(vit._model.blocks[0].mlp.fc2.weight)
    torch.nn.init.zeros_(vit._model.blocks[0].mlp.fc2.bias)
    x = torch.randn(1, 3, 32, 48)
    # block 0 is now the identity, so the output is exactly the patch embedding
    (out,) = vit(x)
    assert torch.equal(out, vit._model.patch_embed(x))


def test_dinov3_applies_final_norm():
    vit = DINOv3ViT("dinov3_vits16", return_layers=[0]).eval()
    (out,) = vit(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 4, 384)
    # LayerNorm with default affine: zero mean, unit variance per token
    assert torch.allclose(out.mean(-1), torch.zeros(1, 4), atol=1e-5)
    assert torch.allclose(out.var(-1, unbiased=False), torch.ones(1, 4), atol=1e-3)


# ---------------------------------------------------------------- freezing


def test_hgnetv2_freezing():
    m = HGNetv2("B0", freeze_at=0, freeze_norm=True, freeze_stem_only=True)
    assert isinstance(m.stem.stem1.bn, FrozenBatchNorm2d)
    assert not any(p.requires_grad for p in m.stem.parameters())
    assert all(p.requires_grad for p in m.stages.parameters())
    keys = m.state_dict().keys()
    assert "stem.stem1.bn.running_var" in keys and not any("num_batches_tracked" in k for k in keys)
    m = HGNetv2("B0", freeze_at=1, freeze_norm=False, freeze_stem_only=False)
    assert not any(p.requires_grad for p in m.stages[:2].parameters())
    assert all(p.requires_grad for p in m.stages[2:].parameters())
    assert all(p.requires_grad for p in HGNetv2("B0", freeze_at=-1, freeze_norm=False).parameters())


def test_dinov3stas_finetune_false_freezes_vit_only():
    m = DINOv3STAs("vit_tiny", interaction_indexes=[3, 7, 11], finetune=False)
    assert not any(p.requires_grad for p in m.dinov3.parameters())
    assert all(p.requires_grad for p in m.sta.parameters())


def test_bad_config_values():
    with pytest.raises(ConfigError):
        HGNetv2("Atto", return_idx=[3])
    with pytest.raises(ConfigError):
        HGNetv2("B9")
    with pytest.raises(ConfigError):
        DINOv3STAs("vit_tiny", interaction_indexes=[3, 7])
    with pytest.raises(ConfigError):
        DINOv3STAs("vit_huge", interaction_indexes=[3, 7, 11])


# ---------------------------------------------------------------- weights


def test_hgnetv2_stage1_file_partial_and_full(tmp_path):
    """The models load no files; the one loader puts a stage-1 file into a bare HGNetv2."""
    with pytest.raises(WeightsError, match="不存在"):
        load_backbone_weights(HGNetv2("Atto", return_idx=[2]), tmp_path / "不存在 dir" / "PPHGNetV2_B0_stage1.pth")
    d = tmp_path / "权重 目录"
    d.mkdir()
    b0 = HGNetv2("B0", use_lab=True)
    torch.save(b0.state_dict(), d / "PPHGNetV2_B0_stage1.pth")
    atto = HGNetv2("Atto", use_lab=True, return_idx=[2])
    report = load_backbone_weights(atto, d / "PPHGNetV2_B0_stage1.pth")  # shape-matching keys only
    assert report.skipped and all("形状" in why or "没有" in why for _, why in report.skipped)
    assert torch.equal(atto.stem.stem1.conv.weight, b0.stem.stem1.conv.weight)
    assert torch.equal(
        atto.stages[1].blocks[0].aggregation[1].conv.weight, b0.stages[1].blocks[0].aggregation[1].conv.weight
    )
    b0b = HGNetv2("B0", use_lab=True, freeze_norm=True)
    report = load_backbone_weights(b0b, str(d / "PPHGNetV2_B0_stage1.pth"))
    assert not report.skipped and not report.missing  # B0 itself: every tensor
    assert torch.equal(
        b0b.stages[3].blocks[0].aggregation[0].conv.weight, b0.stages[3].blocks[0].aggregation[0].conv.weight
    )


@pytest.mark.parametrize("name,kw", [("vit_tiny", {}), ("dinov3_vits16", {})])
def test_dinov3stas_backbone_file(tmp_path, name, kw):
    with pytest.raises(WeightsError, match="找不到"):
        load_backbone_weights(DINOv3STAs(name, interaction_indexes=[5, 8, 11]), tmp_path / "missing.pth")
    src = DINOv3STAs(name, interaction_indexes=[5, 8, 11])
    flat = src.vit_module().state_dict()
    path = tmp_path / "中文 目录" / "backbone weights.pth"
    path.parent.mkdir()
    torch.save(flat, path)
    dst = DINOv3STAs(name, interaction_indexes=[5, 8, 11])
    load_backbone_weights(dst, str(path))
    for k, v in dst.vit_module().state_dict().items():
        assert torch.equal(v, flat[k]), k
    torch.save({"cls_token": torch.zeros(1, 1, 192)}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="不匹配"):
        load_backbone_weights(dst, tmp_path / "bad.pth")


@pytest.mark.parametrize("channels_last", [False, True])
def test_stem_max_pool_matches_nn_max_pool(channels_last):
    """The stem's channels-last max pool gives nn.MaxPool2d's values and gradients exactly, ties included (ReLU
    zeros: the first maximum of the window gets the gradient), and keeps the input's memory order."""
    from deimv2.models.hgnetv2 import StemBlock

    stem = StemBlock(3, 16, 16)
    g = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(2, 16, 33, 33, generator=g))
    x[0, 0, :4, :4] = 1.0  # a plateau: every window of it is a tie
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weights = torch.rand(2, 16, 32, 32, generator=g)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = stem.pool(xa), stem._max_pool(xb)
    (ya * weights).sum().backward()
    (yb * weights).sum().backward()
    assert torch.equal(ya, yb) and torch.equal(xa.grad, xb.grad)
    assert yb.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert xb.grad[0, 0, :3, :3].count_nonzero() == 9  # plateau: each window's gradient went to one element
