"""Proof that training learns: DEIMv2-Atto from scratch on the bundled demo data, on CPU, as `deimv2 demo` does
(the demo's recipe ``deimv2.tutorial.demo.DEMO_RECIPE``, i.e. ``small``).

Records wall time and mAP50 per epoch (from the trainer's log.jsonl) and writes a JSON summary. The recorded run
of the demo's training, with the YOLO11n comparison and a held-out split, is
``benchmarks/results/recipes/small_na10_e40.json`` (``python benchmarks/recipes.py small_na10_e40``; other seeds:
``--seed N``, written as ``small_na10_e40_seed<N>.json``).

    python benchmarks/train_demo.py --epochs 40 --threads 1 --out outputs/train_demo
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> dict:
    from deimv2.data.demo import prepare_demo_coco
    from deimv2.engine.api import train
    from deimv2.engine.logger import read_log
    from deimv2.tutorial.demo import DEMO_RECIPE, FULL_SCHEDULE, demo_overrides

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--variant", default="atto")
    p.add_argument("--recipe", default=DEMO_RECIPE, help="official 或 small（deimv2/config/loader/recipes.py）")
    p.add_argument("--epochs", type=int, default=FULL_SCHEDULE["epochs"])
    p.add_argument("--size", type=int, default=FULL_SCHEDULE["size"])
    p.add_argument("--batch-size", type=int, default=FULL_SCHEDULE["batch_size"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="outputs/train_demo")
    p.add_argument("--update", nargs="*", default=[], help="extra config overrides key=value")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    data = prepare_demo_coco(out / "dataset")
    t0 = time.time()
    overrides = {**demo_overrides(a.size, a.batch_size, recipe=a.recipe)}
    for item in a.update:
        k, v = item.split("=", 1)
        overrides[k] = json.loads(v) if v[:1] in "[{0123456789-tf" and v not in ("true", "false") else v
    metrics = train(
        a.variant,
        data=data,
        output_dir=out / "train",
        epochs=a.epochs,
        overrides=overrides,
        recipe=a.recipe,
        progress=False,
        check_data=False,
    )
    wall = time.time() - t0
    log = read_log(out / "train" / "log.jsonl")
    summary = {
        "variant": a.variant,
        "recipe": a.recipe,
        "epochs": a.epochs,
        "size": a.size,
        "batch_size": a.batch_size,
        "threads": torch.get_num_threads(),
        "device": "cpu",
        "wall_s": round(wall, 1),
        "best_AP": metrics["best_AP"],
        "final_AP": metrics["AP"],
        "final_AP50": metrics["AP50"],
        "curve": [
            {
                "epoch": r["epoch"] + 1,
                "time_s": r["time_s"],
                "loss": round(r.get("train_loss", float("nan")), 3),
                "AP50": round(r["AP50"], 4),
                "AP": round(r["AP"], 4),
            }
            for r in log
        ],
    }
    (out / "train_demo.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    print("epoch  time_s   loss    AP50     AP")
    for r in summary["curve"]:
        print(f"{r['epoch']:>5} {r['time_s']:>7.1f} {r['loss']:>7.3f} {r['AP50']:>7.4f} {r['AP']:>7.4f}")
    print(f"总用时 {wall / 60:.1f} 分钟，最终 AP50={metrics['AP50']:.4f}，最佳 AP={metrics['best_AP']:.4f}")
    return summary


if __name__ == "__main__":
    main()
