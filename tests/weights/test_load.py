"""The checkpoint loader: every checkpoint and backbone format users have, made here with random weights."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from deimv2.config.loader import load_config
from deimv2.engine.checkpoint import make_checkpoint, save_checkpoint
from deimv2.errors import WeightsError
from deimv2.infer.detector import load_detector
from deimv2.models.build import build_model, build_model_from_config
from deimv2.weights.formats import Format, backbone_file_variant, variant_of_state_dict
from deimv2.weights.keys import convert_hf_dinov3_to_meta
from deimv2.weights.load import inspect_weights, load_backbone_weights, load_for_finetune, load_weights


@pytest.fixture(scope="module")
def atto():
    torch.manual_seed(0)
    return build_model("atto", num_classes=4)


def _randomized(model):
    sd, first = {}, {}
    for k, v in model.state_dict(keep_vars=True).items():
        # tied tensors (decoder.up, shared bbox heads) must stay tied: one random value per storage
        ptr = v.data_ptr()
        if ptr not in first:
            first[ptr] = torch.randn_like(v.detach()) if v.is_floating_point() else v.detach().clone()
        sd[k] = first[ptr]
    return sd


def _same_weights(model, sd):
    own = model.state_dict()
    return all(torch.equal(own[k], v) for k, v in sd.items())


def test_official_pth_prefers_ema(tmp_path, atto):
    model_sd, ema_sd = _randomized(atto), _randomized(atto)
    path = tmp_path / "官方 权重.pth"
    torch.save({"model": model_sd, "ema": {"module": ema_sd, "updates": 10}, "last_epoch": 3}, path)
    fresh = build_model("atto", num_classes=4)
    report = load_weights(fresh, path)
    assert _same_weights(fresh, ema_sd) and report.format is Format.OFFICIAL_EMA


def test_hf_hub_safetensors_with_deduplicated_tensors(tmp_path, atto):
    sd = _randomized(atto)
    stored, seen = {}, set()
    for k, v in sd.items():  # the hub file stores each shared tensor once (like safetensors' save_model)
        if id(v) not in seen:
            seen.add(id(v))
            stored[k] = v.clone().contiguous()
    assert len(stored) < len(sd)
    folder = tmp_path / "DEIMv2_HGNetv2_ATTO_COCO"
    folder.mkdir()
    save_file(stored, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(
        json.dumps({"HGNetv2": {"name": "Atto"}, "DEIMTransformer": {"hidden_dim": 64}})
    )
    fresh = build_model("atto", num_classes=4)
    load_weights(fresh, folder)  # a folder works too
    assert _same_weights(fresh, sd)


def test_our_training_checkpoint_keeps_class_names(tmp_path, atto):
    ckpt = make_checkpoint(
        model=atto,
        epoch=1,
        global_step=5,
        best_ap=0.1,
        config={"num_classes": 4},
        class_names=["猫", "咖啡杯", "硬币", "火箭"],
        category_ids=[1, 2, 3, 4],
    )
    path = save_checkpoint(ckpt, tmp_path / "best.pth")
    report = load_weights(build_model("atto", num_classes=4), path)
    assert report.class_names == ["猫", "咖啡杯", "硬币", "火箭"] and report.category_ids == [1, 2, 3, 4]
    info = inspect_weights(path)
    assert info.kind == "detector" and info.variant == "atto" and info.num_classes == 4


def test_num_classes_mismatch_strict_error_and_finetune_report(tmp_path, atto):
    path = tmp_path / "coco.pth"
    torch.save({"model": build_model("atto", num_classes=80).state_dict()}, path)
    with pytest.raises(WeightsError, match="80 个类别.*-t/--tune"):
        load_weights(atto, path)
    report = load_for_finetune(build_model("atto", num_classes=4), path)
    skipped = {k for k, _ in report.skipped}
    assert "decoder.denoising_class_embed.weight" in skipped
    assert {"decoder.dec_score_head.0.weight", "decoder.enc_score_head.weight"} <= skipped
    assert all("形状" in reason for _, reason in report.skipped)
    assert report.loaded > 400 and "跳过" in report.summary()


def test_wrong_variant_and_bad_files(tmp_path, atto):
    femto = tmp_path / "femto.pth"
    torch.save({"model": build_model("femto", num_classes=4).state_dict()}, femto)
    with pytest.raises(WeightsError, match="DEIMv2-FEMTO"):
        load_weights(atto, femto)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="不是可读取的"):
        load_weights(atto, junk)
    with pytest.raises(WeightsError, match="(?s)不存在.*vitt_distill.pt"):
        load_weights(atto, tmp_path / "缺失.pth")
    other = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(WeightsError, match="不是 DEIMv2"):
        load_weights(atto, other)


def test_pickled_objects_are_refused(tmp_path, atto):
    path = tmp_path / "evil.pth"
    torch.save({"model": atto.state_dict(), "args": Path("x")}, path)
    with pytest.raises(WeightsError, match="weights_only"):
        load_weights(atto, path)


@pytest.mark.parametrize("variant", ["atto", "n", "s", "m"])
def test_variant_identified_from_state_dict(variant):
    assert variant_of_state_dict(build_model(variant).state_dict()) == variant


def test_vit_tiny_backbone_file(tmp_path):
    s = build_model("s", num_classes=2)
    sd = {
        k.removeprefix("backbone.dinov3._model."): torch.randn_like(v)
        for k, v in s.state_dict().items()
        if k.startswith("backbone.dinov3._model.")
    }
    path = tmp_path / "vitt_distill.pt"
    torch.save(sd, path)
    assert backbone_file_variant(sd) == ("s", Format.VIT_TINY)
    load_backbone_weights(s, path)
    assert torch.equal(s.state_dict()["backbone.dinov3._model.cls_token"], sd["cls_token"])
    with pytest.raises(WeightsError, match="DEIMv2-S 用的骨干"):
        load_backbone_weights(build_model("m", num_classes=2), path)
    with pytest.raises(WeightsError, match="HGNetv2 骨干"):
        load_backbone_weights(build_model("atto", num_classes=2), path)


def _meta_to_hf(meta: dict, depth: int) -> dict:
    """Meta DINOv3 keys -> Hugging Face DINOv3ViTModel keys (the layout of facebook/dinov3-vits16*)."""
    d = meta["cls_token"].shape[-1]
    hf = {
        "embeddings.cls_token": meta["cls_token"],
        "embeddings.register_tokens": meta["storage_tokens"],
        "embeddings.mask_token": meta["mask_token"].reshape(1, 1, d),
        "embeddings.patch_embeddings.weight": meta["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.bias": meta["patch_embed.proj.bias"],
        "norm.weight": meta["norm.weight"],
        "norm.bias": meta["norm.bias"],
    }
    for i in range(depth):
        b, p = f"blocks.{i}.", f"layer.{i}."
        q, k, v = meta[b + "attn.qkv.weight"].split(d)
        qb, _, vb = meta[b + "attn.qkv.bias"].split(d)
        hf.update(
            {
                p + "attention.q_proj.weight": q,
                p + "attention.k_proj.weight": k,
                p + "attention.v_proj.weight": v,
                p + "attention.q_proj.bias": qb,
                p + "attention.v_proj.bias": vb,
                p + "attention.o_proj.weight": meta[b + "attn.proj.weight"],
                p + "attention.o_proj.bias": meta[b + "attn.proj.bias"],
                p + "layer_scale1.lambda1": meta[b + "ls1.gamma"],
                p + "layer_scale2.lambda1": meta[b + "ls2.gamma"],
            }
        )
        for n in ("norm1", "norm2"):
            hf[p + n + ".weight"], hf[p + n + ".bias"] = meta[b + n + ".weight"], meta[b + n + ".bias"]
        names = {"w1": "gate_proj", "w2": "up_proj", "w3": "down_proj", "fc1": "up_proj", "fc2": "down_proj"}
        for m, h in names.items():
            if b + f"mlp.{m}.weight" in meta:
                hf[p + f"mlp.{h}.weight"], hf[p + f"mlp.{h}.bias"] = (
                    meta[b + f"mlp.{m}.weight"],
                    meta[b + f"mlp.{m}.bias"],
                )
    return hf


@pytest.mark.parametrize("variant", ["l", "x"])
def test_dinov3_meta_and_hf_formats_give_the_same_model(tmp_path, variant):
    torch.manual_seed(1)
    ref = build_model(variant, num_classes=2)
    meta = {
        k.removeprefix("backbone.dinov3."): torch.randn_like(v) if v.is_floating_point() else v
        for k, v in ref.state_dict().items()
        if k.startswith("backbone.dinov3.")
    }
    d = meta["cls_token"].shape[-1]
    for key in [k for k in meta if k.endswith("bias_mask")]:
        meta[key] = torch.cat([torch.ones(d), torch.zeros(d), torch.ones(d)])
    for key in [k for k in meta if k.endswith("attn.qkv.bias")]:
        meta[key][d : 2 * d] = 0  # Meta checkpoints mask the k bias; HF has none
    meta["rope_embed.periods"] = 100.0 ** (torch.arange(16, dtype=torch.float32) / 16)
    meta_path = tmp_path / "dinov3_meta.pth"
    torch.save(meta, meta_path)
    hf = {("model." + k if k.startswith("layer.") else k): v.contiguous() for k, v in _meta_to_hf(meta, 12).items()}
    hf_dir = tmp_path / "hf 格式"
    hf_dir.mkdir()
    save_file(hf, str(hf_dir / "model.safetensors"))
    assert backbone_file_variant(meta)[0] == variant and backbone_file_variant(hf)[0] == variant
    a, b = build_model(variant, num_classes=2), build_model(variant, num_classes=2)
    load_backbone_weights(a, meta_path)
    load_backbone_weights(b, hf_dir / "model.safetensors")
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa if k.startswith("backbone.dinov3."))
    conv = convert_hf_dinov3_to_meta(hf)
    assert torch.allclose(conv["rope_embed.periods"], meta["rope_embed.periods"])


def test_hgnetv2_stage1_file(tmp_path, atto):
    sd = {
        k.removeprefix("backbone."): torch.randn_like(v) if v.is_floating_point() else v
        for k, v in build_model("n").state_dict().items()
        if k.startswith("backbone.")
    }
    path = tmp_path / "PPHGNetV2_B0_stage1.pth"
    torch.save({"model": sd}, path)
    model = build_model("atto", num_classes=4)
    report = load_backbone_weights(model, path)
    assert report.loaded > 0 and report.format is Format.HGNETV2
    assert torch.equal(model.state_dict()["backbone.stem.stem1.conv.weight"], sd["stem.stem1.conv.weight"])


def test_strict_load_derived_anchors_and_variant_checks(tmp_path, atto):
    """One strict loader for training (anchors of another eval size are recomputed) and prediction (they are an
    error naming the fix when the user forces a config)."""
    sd = _randomized(atto)
    path = tmp_path / "atto 4类.pth"
    torch.save({"model": sd}, path)
    small = load_config("atto", num_classes=4, eval_spatial_size=[256, 256])
    other_size = build_model_from_config(small)
    report = load_weights(other_size, path)  # anchors for 256x256 stay the model's own
    assert report.loaded == len(other_size.state_dict()) and other_size.decoder.anchors.shape[1] == 16 * 16 + 8 * 8
    assert _same_weights(
        other_size, {k: v for k, v in sd.items() if k not in ("decoder.anchors", "decoder.valid_mask")}
    )
    with pytest.raises(WeightsError, match="eval_spatial_size 不同"):
        load_detector(path, small)
    with pytest.raises(WeightsError, match="DEIMv2-ATTO.*-c atto"):
        load_detector(path, "femto")
    model, cfg, _ = load_detector(path)
    assert cfg.num_classes == 4 and _same_weights(model, sd)
