"""Guard: the default training settings learn a small dataset from scratch at a small batch (issue: the batch rule).

Atto from scratch on 32 generated images (3 colours, 96²) at batch 4 for 20 epochs (160 optimizer steps). The
default (``recipe="auto"``, nothing else set) must reach a validation AP50 of at least ``MIN_AP50`` in some epoch.
The control is the default before ``auto`` existed: the official schedule with the official batch rule
(``recipe="official"``), whose learning rates at batch 4 are 1/32 of the recipe's; it stays below the threshold,
so the test can fail. Measured over more seeds and batches in benchmarks/batch_rule.py (docs/training.md).
"""

import json

import pytest
import torch
from helpers.tinydata import TINY_TRAIN, make_coco_dataset

from deimv2 import train

#: the stated AP50 the default must reach within 20 epochs (best epoch); the official batch rule gets 0.00
MIN_AP50 = 0.1
TINY = {**TINY_TRAIN, "batch_size": 4}


def _best_ap50(tmp_path, recipe):
    torch.set_num_threads(1)
    data = make_coco_dataset(tmp_path / "data", n_train=32, n_val=16, seed=1)
    out = tmp_path / f"run_{recipe}"
    train("atto", data=data, output_dir=out, overrides=TINY, epochs=20, progress=False, seed=0, recipe=recipe)
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    return max(r["AP50"] for r in logs if "AP50" in r)


@pytest.mark.parametrize("recipe", [None, "official"], ids=["default", "old_default_official_batch_rule"])
def test_default_settings_learn_from_scratch_at_batch_4(tmp_path, recipe):
    threads = torch.get_num_threads()
    try:
        best = _best_ap50(tmp_path, recipe)
    finally:
        torch.set_num_threads(threads)
    if recipe is None:
        assert best >= MIN_AP50, f"默认设置 20 轮最佳 AP50={best:.3f} < {MIN_AP50}"
    else:
        assert best < MIN_AP50, f"对照（官方 batch 规则）20 轮最佳 AP50={best:.3f}，阈值 {MIN_AP50} 区分不了两者"
