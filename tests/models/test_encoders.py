"""Tests for deimv2.models.{layers, hybrid_encoder, lite_encoder}."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from deimv2.errors import ConfigError
from deimv2.models.hybrid_encoder import AIFILayer, HybridEncoder, sincos_position_embedding_2d
from deimv2.models.layers import (
    ConvBNAct,
    ELANFuseBlockDFine,
    RepVGGBlock,
    convert_to_deploy,
    fuse_conv_bn,
    make_activation,
)
from deimv2.models.lite_encoder import LiteEncoder

REF_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "official" / "state_dict"  # benchmarks/make_golden.py

# Encoder kwargs of the official configs (configs/base/deimv2.yml merged with configs/deimv2/*.yml).
_HYBRID_BASE = dict(
    in_channels=[512, 1024, 2048],
    feat_strides=[8, 16, 32],
    hidden_dim=256,
    use_encoder_idx=[2],
    num_encoder_layers=1,
    nhead=8,
    dim_feedforward=1024,
    dropout=0.0,
    enc_act="gelu",
    expansion=1.0,
    depth_mult=1,
    act="silu",
    version="deim",
    csp_type="csp2",
    fuse_op="sum",
    eval_spatial_size=[640, 640],
)
VARIANTS = {
    "atto": (
        LiteEncoder,
        dict(
            in_channels=[256],
            feat_strides=[16],
            hidden_dim=64,
            expansion=0.34,
            depth_mult=0.5,
            act="silu",
            eval_spatial_size=[320, 320],
        ),
    ),
    "femto": (
        LiteEncoder,
        dict(
            in_channels=[512],
            feat_strides=[16],
            hidden_dim=96,
            expansion=0.34,
            depth_mult=0.5,
            act="silu",
            eval_spatial_size=[416, 416],
        ),
    ),
    "pico": (
        LiteEncoder,
        dict(
            in_channels=[512],
            feat_strides=[16],
            hidden_dim=112,
            expansion=0.34,
            depth_mult=0.5,
            act="silu",
            eval_spatial_size=[640, 640],
        ),
    ),
    "n": (
        HybridEncoder,
        {
            **_HYBRID_BASE,
            **dict(
                in_channels=[512, 1024],
                feat_strides=[16, 32],
                hidden_dim=128,
                use_encoder_idx=[1],
                dim_feedforward=512,
                expansion=0.34,
                depth_mult=0.5,
                version="dfine",
            ),
        },
    ),
    "s": (
        HybridEncoder,
        {
            **_HYBRID_BASE,
            **dict(in_channels=[192] * 3, hidden_dim=192, dim_feedforward=512, expansion=0.34, depth_mult=0.67),
        },
    ),
    "m": (
        HybridEncoder,
        {
            **_HYBRID_BASE,
            **dict(in_channels=[256] * 3, hidden_dim=256, dim_feedforward=512, expansion=0.67, depth_mult=1),
        },
    ),
    "l": (HybridEncoder, {**_HYBRID_BASE, **dict(in_channels=[224] * 3, hidden_dim=224, dim_feedforward=896)}),
    "x": (
        HybridEncoder,
        {
            **_HYBRID_BASE,
            **dict(in_channels=[256] * 3, hidden_dim=256, dim_feedforward=1024, expansion=1.25, depth_mult=1.37),
        },
    ),
}
# Parameter counts of the official encoders after DEIM.deploy(), measured on the official code.
OFFICIAL_DEPLOY_PARAMS = {
    "atto": 78792,
    "femto": 193056,
    "pico": 254620,
    "n": 632852,
    "s": 1345472,
    "m": 3817000,
    "l": 4832352,
    "x": 10350336,
}


def build(variant: str, **override) -> nn.Module:
    cls, kw = VARIANTS[variant]
    return cls(**{**kw, **override})


def feats_for(variant: str, size: int = 128, batch: int = 2, seed: int = 0) -> list[torch.Tensor]:
    _, kw = VARIANTS[variant]
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, c, size // s, size // s, generator=g) for c, s in zip(kw["in_channels"], kw["feat_strides"])
    ]


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ---------------------------------------------------------------- official state_dict
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_state_dict_matches_official(variant):
    ref = json.loads((REF_DIR / f"{variant}.json").read_text(encoding="utf-8"))["state_dict"]
    ref = {k[len("encoder.") :]: list(v) for k, v in ref.items() if k.startswith("encoder.")}
    ours = {k: list(t.shape) for k, t in build(variant).state_dict().items()}
    assert ours == ref


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_deploy_param_count_matches_official(variant):
    model = build(variant)
    before = n_params(model)
    model.deploy()
    assert n_params(model) == OFFICIAL_DEPLOY_PARAMS[variant] < before
    assert not any(isinstance(m, ConvBNAct) and hasattr(m, "norm") for m in model.modules())
    assert not any(isinstance(m, RepVGGBlock) and hasattr(m, "conv1") for m in model.modules())


# ---------------------------------------------------------------- shapes
@pytest.mark.parametrize("variant,size", [("atto", 96), ("n", 128), ("s", 128)])
def test_output_shapes(variant, size):
    model = build(variant).eval()
    _, kw = VARIANTS[variant]
    strides = [16, 32] if variant == "atto" else kw["feat_strides"]
    with torch.no_grad():
        outs = model(feats_for(variant, size))
    assert [tuple(o.shape) for o in outs] == [(2, kw["hidden_dim"], size // s, size // s) for s in strides]
    assert model.out_strides == strides and model.out_channels == [kw["hidden_dim"]] * len(strides)


def test_fuse_op_cat_shapes():
    model = build("s", fuse_op="cat", eval_spatial_size=None).eval()
    assert model.fpn_blocks[0].cv1.conv.in_channels == 2 * 192
    with torch.no_grad():
        outs = model(feats_for("s", 64))
    assert [tuple(o.shape) for o in outs] == [(2, 192, 8, 8), (2, 192, 4, 4), (2, 192, 2, 2)]


# ---------------------------------------------------------------- deploy
@pytest.mark.parametrize("variant", ["atto", "n", "s"])
def test_deploy_keeps_outputs(variant):
    torch.manual_seed(0)
    model = build(variant)
    model.train()
    for seed in range(3):  # non-trivial BN running statistics; also checks backward through in-place ops
        outs = model(feats_for(variant, 96, seed=seed))
        sum(o.square().mean() for o in outs).backward()
    model.eval()
    x = feats_for(variant, 96, seed=10)
    with torch.no_grad():
        before = model(x)
        n_before = n_params(model)
        assert model.deploy() is model
        after = model(x)
    assert n_params(model) < n_before
    assert not any(isinstance(m, RepVGGBlock) and hasattr(m, "conv1") for m in model.modules())
    for a, b in zip(before, after):
        assert (a - b).abs().max().item() < 1e-5


def test_deploy_keys_and_idempotent():
    block = RepVGGBlock(4, 4, act="silu")
    conv = ConvBNAct(4, 6, 3, 2, act="relu")
    convert_to_deploy(nn.ModuleList([block, conv]))
    assert set(block.state_dict()) == {"conv.weight", "conv.bias"}
    assert set(conv.state_dict()) == {"conv_bn_fused.weight", "conv_bn_fused.bias"}
    w = block.conv.weight.clone()
    block.convert_to_deploy()  # second call is a no-op
    assert torch.equal(block.conv.weight, w)


def test_fuse_conv_bn_hand_values():
    conv = nn.Conv2d(1, 1, 1, bias=False)
    bn = nn.BatchNorm2d(1, eps=1.0)
    with torch.no_grad():
        conv.weight.fill_(2.0)
        bn.running_mean.fill_(1.0)
        bn.running_var.fill_(3.0)  # std = sqrt(3 + 1) = 2
        bn.weight.fill_(4.0)
        bn.bias.fill_(5.0)
    k, b = fuse_conv_bn(conv, bn)
    assert k.item() == pytest.approx(4.0) and b.item() == pytest.approx(3.0)  # 2*4/2, 5 - 1*4/2
    conv_b = nn.Conv2d(1, 1, 1, bias=True)
    with torch.no_grad():
        conv_b.weight.fill_(2.0)
        conv_b.bias.fill_(0.5)
    k, b = fuse_conv_bn(conv_b, bn)
    assert b.item() == pytest.approx(4.0)  # 5 + (0.5 - 1) * 4/2


def test_repvgg_deploy_hand_values():
    block = RepVGGBlock(1, 1, act=None).eval()
    with torch.no_grad():
        block.conv1.conv.weight.zero_()
        block.conv1.conv.weight[0, 0, 1, 1] = 1.0  # identity 3x3
        block.conv2.conv.weight.fill_(2.0)  # x2 1x1
        block.conv1.norm.bias.fill_(1.0)  # +1
    block.conv1.norm.eps = block.conv2.norm.eps = 0.0  # BN = identity apart from the bias
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    with torch.no_grad():
        expected = x * 3.0 + 1.0
        torch.testing.assert_close(block(x), expected)
        block.convert_to_deploy()
        torch.testing.assert_close(block(x), expected)
        assert block.conv.weight[0, 0, 1, 1].item() == pytest.approx(3.0)


# ---------------------------------------------------------------- position embedding / AIFI
def test_sincos_position_embedding_hand_values():
    # w=2, h=3, dim=4 -> one frequency (1.0); token p: a = p // 3, b = p % 3
    pe = sincos_position_embedding_2d(2, 3, 4, 10000.0)
    assert pe.shape == (1, 6, 4)
    a = [0, 0, 0, 1, 1, 1]
    b = [0, 1, 2, 0, 1, 2]
    expected = torch.tensor([[math.sin(i), math.cos(i), math.sin(j), math.cos(j)] for i, j in zip(a, b)])
    torch.testing.assert_close(pe[0], expected)
    # dim=8, temperature 100 -> frequencies [1, 1/10]; token 5 has a=1, b=2
    pe = sincos_position_embedding_2d(2, 3, 8, 100.0)
    expected5 = torch.tensor(
        [math.sin(1), math.sin(0.1), math.cos(1), math.cos(0.1), math.sin(2), math.sin(0.2), math.cos(2), math.cos(0.2)]
    )
    torch.testing.assert_close(pe[0, 5], expected5)


def test_position_embedding_not_in_state_dict_and_any_size():
    model = build("s", eval_spatial_size=[64, 64]).eval()
    assert not any("pos" in k for k in model.state_dict())
    with torch.no_grad():
        outs = model(feats_for("s", 96))  # differs from eval_spatial_size: computed on the fly
    assert outs[2].shape[-2:] == (3, 3)
    assert (3, 3, torch.device("cpu"), torch.float32) in model._pos_cache


def test_aifi_eval_path_equals_train_path():
    torch.manual_seed(0)
    layer = AIFILayer(32, 4, 64, dropout=0.0, activation="gelu")
    x, pos = torch.randn(2, 10, 32), torch.randn(1, 10, 32)
    with torch.no_grad():
        train_out = layer.train()(x, pos)
        eval_out = layer.eval()(x, pos)
        ref_attn = nn.MultiheadAttention(32, 4, batch_first=True)
        ref_attn.load_state_dict(layer.self_attn.state_dict())
        q = x + pos
        torch.testing.assert_close(layer.self_attn(x, pos), ref_attn(q, q, x)[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(train_out, eval_out, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- bad input
def test_config_errors():
    with pytest.raises(ConfigError):
        make_activation("swishy")
    with pytest.raises(ConfigError):
        ELANFuseBlockDFine(8, 8, 16, 4, 1, csp_type="csp")
    with pytest.raises(ConfigError):
        build("s", version="rtdetr")
    with pytest.raises(ConfigError):
        build("s", fuse_op="mul")
    with pytest.raises(ConfigError):
        build("s").eval()(feats_for("s", 64)[:2])
    with pytest.raises(ConfigError):
        LiteEncoder(in_channels=[256, 512], feat_strides=[16, 32])
