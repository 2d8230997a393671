"""Key renaming: transformers port (Deimv2ForObjectDetection) <-> official keys; round trips, loading, configs,
hand values of the derived tensors (anchors, RoPE periods) the conversion recomputes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from deimv2.errors import WeightsError
from deimv2.models.build import build_model
from deimv2.models.decoder import feature_shapes, make_anchors
from deimv2.models.vit import rope_periods
from deimv2.weights.formats import Format, is_transformers_port
from deimv2.weights.keys import convert_transformers_port, to_transformers_port
from deimv2.weights.load import load_weights
from deimv2.weights.port_config import port_config_for_variant, port_config_to_variant

torch.set_num_threads(1)

REF = Path(__file__).resolve().parents[1] / "fixtures" / "official" / "state_dict"  # benchmarks/make_golden.py
VARIANTS = ["atto", "femto", "pico", "n", "s", "m", "l", "x"]
#: official tensors that are derived, not learned (recomputed by the conversion)
DERIVED = ("decoder.anchors", "decoder.valid_mask", "rope_embed.periods", "qkv.bias_mask", "num_batches_tracked")


def _randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every learned tensor and BN statistic random (defaults have many zeros/ones that hide mix-ups)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point() or name.endswith(DERIVED) or name.endswith(("reg_scale", ".up")):
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.dim() >= 2 and "token" not in name:
                t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(t[0].numel()))
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1 + (1.0 if "lab.scale" in name else 0.0))
    return model.eval()


@pytest.fixture(scope="module")
def atto():
    return _randomize(build_model("atto"))


@pytest.fixture(scope="module")
def small_s():
    return _randomize(build_model("s"), seed=1)


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", ["atto", "small_s"])
def test_round_trip_official_port_official(name, request):
    model = request.getfixturevalue(name)
    sd = model.state_dict()
    port = to_transformers_port(sd, "atto" if name == "atto" else "s")
    assert is_transformers_port(port) and not any(k.startswith(("backbone.", "decoder.decoder.")) for k in port)
    back = convert_transformers_port(port)
    assert set(back) == set(sd)
    for k, v in sd.items():
        assert torch.equal(back[k], v), k


def test_port_tensors_hand_checked(atto, small_s):
    """Splits and renames by hand: q/k/v = rows of in_proj, gate/up = halves of w12, ViT q/k/v = rows of qkv."""
    sd, port = atto.state_dict(), to_transformers_port(atto.state_dict())
    w = sd["decoder.decoder.layers.1.self_attn.in_proj_weight"]
    d = w.shape[1]
    assert torch.equal(port["model.decoder.layers.1.self_attn.k_proj.weight"], w[d : 2 * d])
    assert torch.equal(
        port["model.decoder.layers.1.self_attn.v_proj.bias"],
        sd["decoder.decoder.layers.1.self_attn.in_proj_bias"][2 * d :],
    )
    w12 = sd["decoder.decoder.layers.2.swish_ffn.w12.weight"]
    assert torch.equal(port["model.decoder.layers.2.mlp.gate_proj.weight"], w12[: w12.shape[0] // 2])
    assert torch.equal(port["model.decoder.layers.2.mlp.up_proj.weight"], w12[w12.shape[0] // 2 :])
    assert torch.equal(
        port["model.encoder.fpn_block.csp_rep1.conv2.conv.weight"], sd["encoder.fpn_block.cv2.1.conv.weight"]
    )
    assert torch.equal(port["model.encoder.down_conv2.norm.running_var"], sd["encoder.down_sample2.2.running_var"])
    assert torch.equal(port["class_embed.2.bias"], sd["decoder.dec_score_head.2.bias"])
    assert torch.equal(port["model.enc_output.0.weight"], torch.eye(d))
    assert not any("num_batches_tracked" in k for k in port if k.startswith("model.conv_encoder.model."))

    sd, port = small_s.state_dict(), to_transformers_port(small_s.state_dict())
    qkv = sd["backbone.dinov3._model.blocks.3.attn.qkv.bias"]
    assert torch.equal(port["model.conv_encoder.backbone.model.layer.3.attention.k_proj.bias"], qkv[192:384])
    assert torch.equal(
        port["model.encoder.aifi.0.layers.0.self_attn.q_proj.weight"],
        sd["encoder.encoder.0.layers.0.self_attn.in_proj_weight"][:192],
    )
    assert torch.equal(
        port["model.conv_encoder.spatial_tuning_adapter.conv3.conv.weight"], sd["backbone.sta.conv3.1.weight"]
    )
    assert torch.equal(port["model.conv_encoder.fusion_proj.2.norm.bias"], sd["backbone.norms.2.bias"])
    assert port["model.conv_encoder.backbone.embeddings.register_tokens"].shape == (1, 0, 192)


@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip_all_official_key_layouts(variant):
    """Every key of every official variant (reference key list) maps to the port and back."""
    shapes = json.loads((REF / f"{variant}.json").read_text(encoding="utf-8"))["state_dict"]
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(s, generator=g) for k, s in shapes.items() if not k.endswith(DERIVED)}
    sd["decoder.up"], sd["decoder.reg_scale"] = sd["decoder.decoder.up"], sd["decoder.decoder.reg_scale"]
    for k in [k for k in shapes if k.endswith("qkv.bias_mask")]:  # DINOv3: masked (zero) key bias
        n = shapes[k][0] // 3
        sd[k] = torch.cat([torch.ones(n), torch.zeros(n), torch.ones(n)])
        sd[k[: -len("_mask")]] = sd[k[: -len("_mask")]] * sd[k]
    back = convert_transformers_port(to_transformers_port(sd, variant))
    assert set(back) == set(shapes)
    assert all(list(back[k].shape) == shapes[k] for k in shapes)
    assert all(torch.equal(back[k], v) for k, v in sd.items())


# --------------------------------------------------------------------------- loading a port file
def test_load_weights_reads_port_safetensors(atto, tmp_path):
    from safetensors.torch import save_file

    port = to_transformers_port(atto.state_dict(), "atto")
    # like save_pretrained: one copy of tied tensors (top-level heads, the shared bbox head)
    port = {
        k: v
        for k, v in port.items()
        if not k.startswith(
            ("class_embed.", "bbox_embed.", "model.decoder.bbox_embed.0.", "model.decoder.bbox_embed.1.")
        )
    }
    path = tmp_path / "模型 目录" / "model.safetensors"
    path.parent.mkdir()
    save_file(port, str(path))
    model = build_model("atto").eval()
    report = load_weights(model, path)
    assert report.format is Format.TRANSFORMERS_PORT
    x = torch.rand(1, 3, 320, 320, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want, got = atto(x), model(x)
    assert torch.equal(got["pred_logits"], want["pred_logits"]) and torch.equal(got["pred_boxes"], want["pred_boxes"])


def test_is_transformers_port_false_for_official_and_ours(atto):
    assert not is_transformers_port(atto.state_dict())
    keys = json.loads((REF / "s.json").read_text(encoding="utf-8"))["state_dict"]
    assert len(keys) > 600 and not is_transformers_port(dict.fromkeys(keys, torch.zeros(1)))
    assert is_transformers_port(to_transformers_port(atto.state_dict()))


def test_conversion_errors(atto, small_s):
    port = to_transformers_port(atto.state_dict())
    trained = dict(port, **{"model.enc_output.1.weight": torch.full_like(port["model.enc_output.1.weight"], 2.0)})
    with pytest.raises(WeightsError, match="enc_output"):
        convert_transformers_port(trained)
    with pytest.raises(WeightsError, match="无法识别"):
        convert_transformers_port(dict(port, **{"model.decoder.extra.weight": torch.zeros(1)}))
    with pytest.raises(WeightsError, match="DEIMv2-S"):
        to_transformers_port(atto.state_dict(), "s")
    port_s = to_transformers_port(small_s.state_dict())
    key = "model.conv_encoder.backbone.model.layer.0.layer_scale1.lambda1"
    with pytest.raises(WeightsError, match="layer scale"):
        convert_transformers_port(dict(port_s, **{key: port_s[key] * 0.5}))


def test_missing_key_bias_reads_as_zero(small_s):
    """Port configs with key_bias=False store no k_proj.bias: the official qkv bias gets zeros there."""
    port = to_transformers_port(small_s.state_dict())
    port = {k: v for k, v in port.items() if not k.endswith("attention.k_proj.bias")}
    qkv = convert_transformers_port(port)["backbone.dinov3._model.blocks.0.attn.qkv.bias"]
    assert not qkv[192:384].any() and torch.equal(
        qkv[:192], small_s.state_dict()["backbone.dinov3._model.blocks.0.attn.qkv.bias"][:192]
    )


# --------------------------------------------------------------------------- derived tensors, configs
def test_make_anchors_hand_values():
    anchors, valid = make_anchors(feature_shapes((32, 32), [16, 32]))
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    assert anchors.shape == (1, 5, 4) and bool(valid.all())
    # level 0: 2x2 cells, centres 0.25 / 0.75, size 0.05; row-major (y outer); level 1: one cell, size 0.1
    assert torch.allclose(anchors[0, 1], torch.tensor([logit(0.75), logit(0.25), logit(0.05), logit(0.05)]))
    assert torch.allclose(anchors[0, 4], torch.tensor([0.0, 0.0, logit(0.1), logit(0.1)]))
    anchors, valid = make_anchors(feature_shapes((16, 16), [16]), grid_size=0.995)  # size > 1 - eps: invalid -> inf
    assert not valid.any() and torch.isinf(anchors).all()


def test_make_anchors_equal_model_buffers(atto):
    anchors, valid = make_anchors(feature_shapes((320, 320), [16, 32]))
    assert torch.equal(anchors, atto.decoder.anchors) and torch.equal(valid, atto.decoder.valid_mask)


def test_rope_periods_hand_values():
    p = rope_periods(64)
    assert p.shape == (16,) and p[0] == 1.0
    assert torch.isclose(p[1], torch.tensor(100.0 ** (2 / 32))) and torch.isclose(
        p[-1], torch.tensor(100.0 ** (30 / 32))
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_port_config_to_variant(variant):
    cfg = json.loads(json.dumps(port_config_for_variant(variant)))  # what config.json holds
    cfg["model_type"] = "deimv2"
    assert port_config_to_variant(cfg) == variant


def test_port_config_to_variant_rejects_others():
    cfg = port_config_for_variant("n")
    assert port_config_to_variant(dict(cfg, model_type="d_fine")) is None
    assert port_config_to_variant(dict(cfg, d_model=100)) is None
    assert port_config_to_variant(dict(cfg, encoder_type="lite")) is None  # N has a hybrid encoder
    x = port_config_for_variant("x")
    assert port_config_to_variant(dict(x, backbone_config=dict(x["backbone_config"], use_gated_mlp=False))) is None


# --------------------------------------------------------------------------- with transformers installed
@pytest.mark.parametrize("variant", ["atto", "n", "s", "l"])
def test_our_conversion_loads_strictly_into_the_transformers_class(variant):
    """``to_transformers_port`` gives exactly the keys and shapes of ``Deimv2ForObjectDetection`` (no download)."""
    import transformers  # in [dev]

    torch.manual_seed(0)
    port = transformers.Deimv2ForObjectDetection(transformers.Deimv2Config(**port_config_for_variant(variant)))
    ours = build_model(variant)
    converted = to_transformers_port(ours.state_dict(), variant)
    result = port.load_state_dict(converted, strict=False)
    tied = {k for k in result.missing_keys if k.startswith(("class_embed.", "bbox_embed."))}  # tied to decoder heads
    assert set(result.missing_keys) == tied and not result.unexpected_keys
    sd = port.state_dict()
    assert all(sd[k].shape == v.shape for k, v in converted.items())
    back = convert_transformers_port(port.state_dict())
    assert all(torch.equal(back[k], v) for k, v in ours.state_dict().items() if k in back)
    assert set(back) == set(ours.state_dict())


def test_real_transformers_model_matches_after_conversion():
    import transformers  # in [dev]
    from torch import nn

    port = transformers.Deimv2ForObjectDetection(transformers.Deimv2Config(**port_config_for_variant("atto"))).eval()
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():  # random weights everywhere except the identity enc_output the official model lacks
        for name, t in port.state_dict().items():
            if not t.is_floating_point() or "enc_output" in name or name.endswith(("up", "reg_scale", "points_scale")):
                continue
            if "running_var" in name:
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.75)
            elif t.dim() >= 2:
                t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(t[0].numel()))
            else:
                t.add_(torch.randn(t.shape, generator=g) * 0.05)
        port.model.enc_score_head.weight.mul_(30)  # well separated encoder scores: no top-k near-ties
        lin, norm = port.model.enc_output  # what the port's own converter writes (the official model has none)
        lin.weight.copy_(torch.eye(lin.weight.shape[0])), lin.bias.zero_(), norm.weight.fill_(1.0), norm.bias.zero_()
    ours = build_model("atto").eval()
    ours.load_state_dict(convert_transformers_port(port.state_dict()), strict=True)

    class FirstCall(nn.Module):  # the official decoder computes the query position embedding once
        def __init__(self, head):
            super().__init__()
            self.head, self.cache = head, None

        def forward(self, ref):
            if self.cache is None:
                self.cache = self.head(ref)
            return self.cache

    # The port computes a slightly different function (see deimv2.weights.keys): set it back to the official one.
    port.model.enc_output = nn.Identity()
    for mlp in [
        port.model.enc_bbox_head,
        port.model.decoder.pre_bbox_head,
        *port.model.decoder.bbox_embed,
        *(lqe.reg_conf for lqe in port.model.decoder.lqe_layers),
    ]:
        mlp.act = nn.SiLU()
    port.model.decoder.query_pos_head = FirstCall(port.model.decoder.query_pos_head)
    x = torch.rand(1, 3, 320, 320, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want, got = port(pixel_values=x), ours(x)
    assert (want.logits - got["pred_logits"]).abs().max() < 1e-4
    assert (want.pred_boxes - got["pred_boxes"]).abs().max() < 1e-4
