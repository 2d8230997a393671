"""Official checkpoint download (deimv2.weights.hub), served from a local file:// "hub" built here."""

import io
import json

import pytest
import torch
from safetensors.torch import save_file

from deimv2.config.variants import VARIANT_TABLE
from deimv2.errors import WeightsError
from deimv2.models.build import build_model
from deimv2.weights.hub import (
    can_reach,
    copy_stream,
    download_official_checkpoint,
    official_checkpoint_dir,
    official_checkpoint_urls,
)
from deimv2.weights.load import load_for_finetune


def _fake_hub(root, variant="atto", num_classes=80):
    """Lay out ``root/<repo>/resolve/main/{config.json, model.safetensors}`` like huggingface.co."""
    torch.manual_seed(0)
    model = build_model(variant, num_classes=num_classes, overrides={"HGNetv2.pretrained": False})
    stored, seen = {}, set()
    for k, v in model.state_dict().items():  # the hub stores each shared tensor once
        if v.data_ptr() not in seen:
            seen.add(v.data_ptr())
            stored[k] = v.clone().contiguous()
    folder = root / VARIANT_TABLE[variant].hf_repo / "resolve" / "main"
    folder.mkdir(parents=True)
    save_file(stored, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(
        json.dumps({"HGNetv2": {"name": "Atto"}, "DEIMTransformer": {"hidden_dim": 64}})
    )
    return root.as_uri()


def test_urls_follow_the_catalogue():
    urls = official_checkpoint_urls("s")
    assert urls["model.safetensors"].endswith("/Intellindust/DEIMv2_DINOv3_S_COCO/resolve/main/model.safetensors")
    with pytest.raises(WeightsError, match="可选"):
        official_checkpoint_urls("huge")


def test_download_checks_and_finetune_skips_only_the_class_head(tmp_path):
    base = _fake_hub(tmp_path / "hub")
    assert can_reach(official_checkpoint_urls("atto", base)["config.json"])
    info = download_official_checkpoint("atto", tmp_path / "ckpts 中文", base=base, progress=False)
    assert info.kind == "detector" and info.variant == "atto" and info.num_classes == 80
    folder = official_checkpoint_dir("atto", tmp_path / "ckpts 中文")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    report = load_for_finetune(build_model("atto", num_classes=4, overrides={"HGNetv2.pretrained": False}), folder)
    assert report.loaded > 100 and report.skipped
    assert all("形状" in why for _, why in report.skipped)
    assert all(k.startswith(("decoder.", "denoising")) for k, _ in report.skipped)
    # present files are not fetched again: an unreachable hub still works
    assert (
        download_official_checkpoint(
            "atto", tmp_path / "ckpts 中文", base=(tmp_path / "nowhere").as_uri(), progress=False
        ).variant
        == "atto"
    )


def test_wrong_variant_is_refused(tmp_path):
    hub = tmp_path / "hub"
    base = _fake_hub(hub)
    (hub / VARIANT_TABLE["femto"].hf_repo).parent.mkdir(parents=True, exist_ok=True)
    (hub / VARIANT_TABLE["atto"].hf_repo).rename(hub / VARIANT_TABLE["femto"].hf_repo)  # atto files served as femto
    with pytest.raises(WeightsError, match="FEMTO"):
        download_official_checkpoint("femto", tmp_path / "ckpts", base=base, progress=False)


def test_unreachable_and_truncated_downloads(tmp_path):
    assert not can_reach((tmp_path / "missing.json").as_uri())
    with pytest.raises(WeightsError, match="无法下载"):
        download_official_checkpoint("atto", tmp_path / "ckpts", base=(tmp_path / "nowhere").as_uri(), progress=False)
    dst = tmp_path / "model.safetensors"
    with pytest.raises(WeightsError, match="下载不完整"):
        copy_stream(io.BytesIO(b"x" * 10), dst, expected=20, progress=False)
    assert not dst.exists() and not (tmp_path / "model.safetensors.part").exists()
    assert copy_stream(io.BytesIO(b"x" * 10), dst, expected=10, progress=False) == 10 and dst.read_bytes() == b"x" * 10


def test_offline_switch_blocks_http_only(tmp_path, monkeypatch):
    import deimv2.weights.hub as hub

    calls, real_urlopen = [], hub.urllib.request.urlopen

    def recording_urlopen(request, *args, **kwargs):
        url = getattr(request, "full_url", request)
        calls.append(url)
        if url.startswith("http"):
            raise OSError("no network in tests")
        return real_urlopen(request, *args, **kwargs)

    monkeypatch.setattr(hub.urllib.request, "urlopen", recording_urlopen)
    url = official_checkpoint_urls("atto")["config.json"]
    for value in ("1", "true", "ON"):
        monkeypatch.setenv("HF_HUB_OFFLINE", value)
        assert hub.offline() and not can_reach(url)
        with pytest.raises(WeightsError, match="离线模式.*HF_HUB_OFFLINE"):
            hub.download_file(url, tmp_path / "权重" / "config.json", progress=False)
    assert calls == [] and not (tmp_path / "权重").exists()  # no request was made, nothing written
    base = _fake_hub(tmp_path / "hub")  # a local file:// hub still works offline
    assert can_reach(official_checkpoint_urls("atto", base)["config.json"])
    assert all(c.startswith("file:") for c in calls)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert not hub.offline()
    assert not can_reach(url) and calls[-1] == url  # online again: the request is made (and fails here)


# ---------------------------------------------------------------- HGNetv2 stage-1 backbone files


def _stage1_release(root):
    """A local "release page" holding PPHGNetV2_B0_stage1.pth, made from a B0 backbone here."""
    from deimv2.models.hgnetv2 import HGNetv2

    torch.manual_seed(0)
    b0 = HGNetv2("B0", use_lab=True)
    root.mkdir(parents=True)
    torch.save(b0.state_dict(), root / "PPHGNetV2_B0_stage1.pth")
    return b0, root.as_uri() + "/"


def _trainer_stub(cfg):
    """What Trainer.load_backbone reads: the config, the model, no EMA, one process."""
    from types import SimpleNamespace

    model = build_model("atto", num_classes=3, overrides={"HGNetv2.pretrained": False})
    return SimpleNamespace(cfg=cfg, model=model, ema=None, progress=False, distributed=False)


def test_training_downloads_a_missing_hgnetv2_backbone(tmp_path, monkeypatch):
    """As the official HGNetv2: the stage-1 file is fetched on first use, then loaded (partly, into Atto)."""
    import deimv2.weights.hub as hub
    from deimv2.config.loader import load_config
    from deimv2.engine.trainer import Trainer

    b0, base = _stage1_release(tmp_path / "release")
    monkeypatch.setattr(hub, "HGNETV2_RELEASE_URL", base)
    ckpts = tmp_path / "权重 目录"
    cfg = load_config("atto", {"HGNetv2.local_model_dir": str(ckpts) + "/"})
    stub = _trainer_stub(cfg)
    Trainer.load_backbone(stub)
    assert (ckpts / "PPHGNetV2_B0_stage1.pth").is_file()
    assert torch.equal(stub.model.backbone.stem.stem1.conv.weight, b0.stem.stem1.conv.weight)


def test_offline_backbone_download_says_what_to_do(tmp_path):
    """HF_HUB_OFFLINE=1 (the tests' setting): no request; the message names the URL, the path and the way out."""
    from deimv2.config.loader import load_config
    from deimv2.engine.trainer import Trainer

    ckpts = tmp_path / "离线 ckpts"
    cfg = load_config("atto", {"HGNetv2.local_model_dir": str(ckpts) + "/"})
    with pytest.raises(WeightsError) as e:
        Trainer.load_backbone(_trainer_stub(cfg))
    msg = str(e.value)
    assert "自动下载骨干网络权重没有成功" in msg and "离线模式" in msg
    assert "PPHGNetV2_B0_stage1.pth" in msg and "HGNetv2.pretrained=false" in msg
    assert not (ckpts / "PPHGNetV2_B0_stage1.pth").exists()


def test_dinov3_backbones_are_not_downloaded(tmp_path):
    """S…X files come from Google Drive / Meta by hand, as officially: the error, no download attempt."""
    from deimv2.config.loader import load_config
    from deimv2.engine.trainer import Trainer

    cfg = load_config("s", {"DINOv3STAs.weights_path": str(tmp_path / "vitt_distill.pt")})
    stub = _trainer_stub(cfg)
    with pytest.raises(WeightsError) as e:
        Trainer.load_backbone(stub)
    assert "自动下载" not in str(e.value) and "vitt_distill.pt" in str(e.value)
