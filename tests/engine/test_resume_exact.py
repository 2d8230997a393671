"""Bit-exact resume: N epochs straight == N/2 epochs, interrupted, then ``-r last.pth`` for the rest.

CPU, two data-loading workers, augmentations (Mosaic, photometric, crops, flips, multi-scale collate) and
denoising on, so every random-number stream training consumes is exercised; EMA restarts at stop_epoch.
Atto's defaults, so channels-last memory order (``base/hgnetv2.yaml``); channels-first in test_speed.py.
"""

import json

import pytest
import torch

from deimv2.engine.api import train
from deimv2.engine.checkpoint import load_checkpoint

EPOCHS = 4
SETTINGS = {
    "HGNetv2.pretrained": False,
    "eval_spatial_size": [96, 96],
    "batch_size": 2,
    "num_workers": 2,
    "val_dataloader.num_workers": 0,
    "val_dataloader.total_batch_size": 4,
    "DEIMTransformer.num_queries": 30,
    "PostProcessor.num_top_queries": 30,
    "train_dataloader.dataset.transforms.policy.epoch": [1, 2, 3],
    "train_dataloader.dataset.transforms.mosaic_prob": 0.5,
    "train_dataloader.collate_fn.stop_epoch": 3,
}


class Interrupt(Exception):
    pass


def _run(data, out, **kw):
    return train(
        "atto",
        data=data,
        output_dir=out,
        overrides=SETTINGS,
        epochs=EPOCHS,
        max_iters_per_epoch=2,
        progress=False,
        check_data=False,
        **kw,
    )


def _log(path):
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for r in rows:
        r.pop("time_s")
    return rows


def test_resumed_run_equals_uninterrupted_run(tiny_coco, tmp_path):
    straight, split = tmp_path / "一次 跑完", tmp_path / "中断 后继续"
    _run(tiny_coco, straight)

    def stop_half_way(record):
        if record["epoch"] == EPOCHS // 2 - 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        _run(tiny_coco, split, callback=stop_half_way)
    half = load_checkpoint(split / "last.pth")
    assert half["epoch"] == EPOCHS // 2 - 1 and {"python", "numpy", "torch", "loader"} <= set(half["rng"])
    _run(tiny_coco, split, resume=split / "last.pth")
    assert load_checkpoint(straight / "last.pth")["config"]["channels_last"] is True

    a, b = load_checkpoint(straight / "last.pth"), load_checkpoint(split / "last.pth")
    assert a["epoch"] == b["epoch"] == EPOCHS - 1 and a["global_step"] == b["global_step"]
    for part in ("model", "ema"):
        sa, sb = (a[part], b[part]) if part == "model" else (a[part]["module"], b[part]["module"])
        diff = [k for k in sa if not torch.equal(sa[k], sb[k])]
        assert not diff, f"{part}: {len(diff)} tensors differ, e.g. {diff[:3]}"
    for i, st in a["optimizer"]["state"].items():
        assert all(torch.equal(v, b["optimizer"]["state"][i][k]) for k, v in st.items())
    assert all(torch.equal(v, b["rng"][k]) for k, v in a["rng"].items() if isinstance(v, torch.Tensor))
    assert _log(straight / "log.jsonl") == _log(split / "log.jsonl")
