"""From scratch at a small batch: the default recipe (``auto``) against the official batch-size rule.

Trains Atto from scratch on a small generated set (coloured rectangles, ``tests/tinydata.py``: 3 classes, 96²
images, a separate validation split) with each recipe at each batch size, and writes the validation AP50/AP of
every run to ``benchmarks/results/recipes/batch_rule_tiny.json``::

    python benchmarks/batch_rule.py                                  # batch 4, auto vs official, seed 0
    python benchmarks/batch_rule.py --batches 4 8 16 --seeds 0 1 2   # the wider study

``auto`` keeps the learning rates, EMA and warm-ups at the user's batch (``scale_lr: false``); ``official`` scales
them by ``k = batch / 128`` (Atto's reference batch). A tiny set shows the direction of the effect, not the AP a
real dataset reaches.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from latency import run_meta, write_results  # noqa: E402
from tinydata import make_coco_dataset  # noqa: E402

#: small enough for a CPU: 96² input, 30 queries, no data-loader workers
TINY = {
    "HGNetv2.pretrained": False,
    "eval_spatial_size": [96, 96],
    "num_workers": 0,
    "val_dataloader.num_workers": 0,
    "val_dataloader.total_batch_size": 4,
    "DEIMTransformer.num_queries": 30,
    "PostProcessor.num_top_queries": 30,
}
OUT = ROOT / "benchmarks" / "results" / "recipes" / "batch_rule_tiny.json"
DOC = ROOT / "docs" / "training.md"
START, END = "<!-- batch_rule_tiny: written by benchmarks/batch_rule.py -->", "<!-- /batch_rule_tiny -->"


def render_table(results: dict) -> str:
    """The docs table of a results JSON: one row per (batch, recipe), mean over seeds."""
    rows = results["rows"]
    lines = ["| batch | 配方 | 种子数 | 验证集 AP50（平均） | 验证集 AP（平均） |", "|---|---|---|---|---|"]
    for batch in sorted({r["batch"] for r in rows}):
        for recipe in ("auto", "official"):
            got = [r for r in rows if r["batch"] == batch and r["recipe"] == recipe]
            if got:
                ap50 = sum(r["AP50"] for r in got) / len(got)
                ap = sum(r["AP"] for r in got) / len(got)
                lines.append(f"| {batch} | `{recipe}` | {len(got)} | {ap50:.2f} | {ap:.2f} |")
    return "\n".join(lines)


def write_doc_table(results: dict, doc: Path = DOC) -> None:
    """Replace the table between the markers of ``docs/training.md``."""
    text = doc.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{START}\n{render_table(results)}\n{END}{tail}", encoding="utf-8")


def one_run(data: Path, out: Path, recipe: str, batch: int, epochs: int, seed: int) -> dict:
    import torch

    from deimv2 import train

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    m = train(
        "atto",
        data=data,
        output_dir=out,
        overrides={**TINY, "batch_size": batch},
        epochs=epochs,
        progress=False,
        seed=seed,
        recipe=None if recipe == "auto" else recipe,
    )
    return {"AP50": m["AP50"], "AP": m["AP"], "best_AP": m["best_AP"], "wall_s": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description="小 batch 从头训练：默认配方 auto 与官方 batch 规则的对比")
    p.add_argument("--batches", type=int, nargs="+", default=[4])
    p.add_argument("--recipes", nargs="+", default=["auto", "official"], choices=["auto", "official"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--n-train", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(OUT))
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    meta = {**run_meta(a.threads, len(a.seeds), sys.argv if argv is None else argv), "n_train": a.n_train}
    rows = []
    with TemporaryDirectory() as tmp:
        data = make_coco_dataset(Path(tmp) / "data", n_train=a.n_train, n_val=16, seed=1)
        for seed in a.seeds:
            for batch in a.batches:
                for recipe in a.recipes:  # the recipes side by side for each seed and batch
                    r = one_run(data, Path(tmp) / f"{recipe}_{batch}_{seed}", recipe, batch, a.epochs, seed)
                    rows.append({"recipe": recipe, "batch": batch, "seed": seed, "epochs": a.epochs, **r})
                    print(rows[-1], flush=True)
    write_results(a.out, meta, rows)
    if Path(a.out).resolve() == OUT:
        write_doc_table({"rows": rows})
    return {"meta": meta, "rows": rows}


if __name__ == "__main__":
    main()
