"""Official checkpoint download (deimv2.hub), served from a local file:// "hub" built here."""

import io
import json

import pytest
import torch
from safetensors.torch import save_file

from deimv2.checkpoints.loader import load_for_finetune
from deimv2.errors import WeightsError
from deimv2.hub import (
    can_reach,
    copy_stream,
    download_official_checkpoint,
    official_checkpoint_dir,
    official_checkpoint_urls,
)
from deimv2.models.build import build_model
from deimv2.variants import VARIANT_TABLE


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
    import deimv2.hub as hub

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
