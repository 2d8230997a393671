"""The batch-size rule at a small batch: linear (official), square root, or none, from scratch and fine-tuning.

Trains Atto on small generated sets (coloured rectangles on grey, 96² images, a separate validation split) and
writes the validation AP50/AP of every run to ``benchmarks/results/recipes/batch_rule_<mode>.json``; the mean
table goes into docs/training.md between its markers::

    python benchmarks/batch_rule.py scratch                 # batch 4 8 16 × none/linear/sqrt × seeds 0 1 2
    python benchmarks/batch_rule.py tune                    # pretrain once, then fine-tune at batch 4 and 16
    python benchmarks/batch_rule.py demo --seeds 0          # the bundled demo at batch 16, 40 epochs

* ``scratch``: the default recipe (``auto``, which is ``small`` on a set this size) with the rule off (``none``,
  the default), ``linear`` (``-u scale_lr=true``: the official rule, every LR × k, k = batch / 128 for Atto) or
  ``sqrt`` (``-u scale_lr=true scale_lr_rule=sqrt``: × √k).
* ``tune``: a detector is first pretrained from scratch on another generated set (8 other colours, two shapes,
  saved with 80 classes like the official COCO checkpoints), then fine-tuned with ``-t`` on the 3-colour set:
  ``auto`` (the official schedule for the given epochs) with the same three choices. No COCO weights can be
  downloaded here, so this shows the direction of the effect, not the AP of a COCO fine-tune.

A tiny set shows the direction of an effect, not the AP a real dataset reaches.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from helpers.tinydata import TINY_TRAIN, make_coco_dataset  # noqa: E402
from latency import run_meta, write_results  # noqa: E402
from recipes import GEN_SEED, GEN_TRAIN, GEN_VALID, _generate, gen_command  # noqa: E402

#: small enough for a CPU: 96² input, 30 queries, no data-loader workers
TINY = TINY_TRAIN
#: rule -> overrides on top of the default recipe
RULES = {
    "none": {},
    "linear": {"scale_lr": True},
    "sqrt": {"scale_lr": True, "scale_lr_rule": "sqrt"},
}
MODES = {
    "scratch": {"batches": [4, 8, 16], "epochs": 20, "n_train": 32},
    "tune": {"batches": [4, 16], "epochs": 12, "n_train": 32},
    # the bundled demo as `deimv2 demo` trains it (256², from scratch, no workers) at the low-VRAM batch 16
    "demo": {"batches": [16], "epochs": 40, "n_train": None},
    # photo2 (data/make_photo2_dataset.py, generated) with the command of issue 25: Atto at its own 320², from
    # scratch (HGNetv2.pretrained=false), batch 16, 40 epochs, everything else default
    "photo2": {"batches": [16], "epochs": 40, "n_train": None},
}
RESULTS = ROOT / "benchmarks" / "results" / "recipes"
DOC = ROOT / "docs" / "training.md"
PRETRAIN_COLORS = [
    (230, 200, 30),
    (30, 200, 200),
    (200, 40, 200),
    (240, 130, 20),
    (120, 40, 160),
    (250, 250, 250),
    (20, 20, 20),
    (130, 80, 30),
]


def markers(mode: str) -> tuple[str, str]:
    return f"<!-- batch_rule_{mode}: written by benchmarks/batch_rule.py -->", f"<!-- /batch_rule_{mode} -->"


def make_pretrain_set(root: Path, n_train: int = 160, n_val: int = 32, seed: int = 7) -> Path:
    """Rectangles and ellipses in 8 colours (none of them the 3 of the fine-tune set); 80 categories, 8 used."""
    names = [f"类别{i}" for i in range(80)]
    return make_coco_dataset(
        root, n_train, n_val, seed=seed, colors=PRETRAIN_COLORS, names=names, max_objects=3, ellipses=True
    )


def photo2_data(root: Path, gen_python: str) -> Path:
    """photo2 generated as benchmarks/recipes.py makes it (same seed and sizes), converted to COCO."""
    _generate(gen_python, "photo2", root / "photo2_yolo", root / "photo2_coco", GEN_TRAIN, GEN_VALID, GEN_SEED)
    return root / "photo2_coco"


def photo2_splits() -> str:
    made = " ".join(gen_command("photo2", "<folder>", GEN_TRAIN, GEN_VALID, GEN_SEED))
    return f"photo2: python {made}; its own valid split, scored every epoch"


def one_run(
    data: Path, out: Path, rule: str, batch: int, epochs: int, seed: int, tune: Path | None, base: dict = TINY
) -> dict:
    import torch

    from deimv2 import train

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    m = train(
        "atto",
        data=data,
        tune=tune,
        output_dir=out,
        overrides={**base, "batch_size": batch, **RULES[rule]},
        epochs=epochs,
        progress=False,
        seed=seed,
    )
    return {"AP50": m["AP50"], "AP": m["AP"], "best_AP": m["best_AP"], "wall_s": round(time.perf_counter() - t0, 1)}


def pretrain(root: Path, epochs: int, seed: int = 0) -> tuple[Path, dict]:
    """From scratch on the 80-class pretraining set; returns its best.pth (EMA weights, official layout)."""
    from deimv2 import train

    data = make_pretrain_set(root / "pretrain_data")
    m = train(
        "atto",
        data=data,
        output_dir=root / "pretrain",
        overrides={**TINY, "batch_size": 8},
        epochs=epochs,
        progress=False,
        seed=seed,
    )
    return root / "pretrain" / "best.pth", {"AP50": m["AP50"], "AP": m["AP"]}


def render_table(rows: list[dict]) -> str:
    """One line per (batch, rule): mean and range over seeds of the final validation AP50 and AP."""
    lines = [
        "| batch | batch 规则 | 种子数 | 最后验证集 AP50 平均（最低–最高） | 最后 AP 平均 | 各轮最佳 AP 平均 |",
        "|---|---|---|---|---|---|",
    ]
    for batch in sorted({r["batch"] for r in rows}):
        for rule in RULES:
            got = [r for r in rows if r["batch"] == batch and r["rule"] == rule]
            if got:
                ap50 = [r["AP50"] for r in got]
                ap = statistics.mean(r["AP"] for r in got)
                best = statistics.mean(r["best_AP"] for r in got)
                name = {"none": "不缩放（默认）", "linear": "线性（官方）", "sqrt": "平方根"}[rule]
                lines.append(
                    f"| {batch} | {name} | {len(got)} | {statistics.mean(ap50):.2f}（{min(ap50):.2f}–{max(ap50):.2f}）"
                    f" | {ap:.2f} | {best:.2f} |"
                )
    return "\n".join(lines)


def write_doc_table(mode: str, rows: list[dict], doc: Path = DOC) -> None:
    """Replace the table between the ``batch_rule_<mode>`` markers of ``docs/training.md``."""
    start, end = markers(mode)
    text = doc.read_text(encoding="utf-8")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{start}\n{render_table(rows)}\n{end}{tail}", encoding="utf-8")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description="小 batch 训练：batch 规则线性、平方根或不缩放的对比")
    p.add_argument("mode", choices=list(MODES))
    p.add_argument("--batches", type=int, nargs="+")
    p.add_argument("--rules", nargs="+", default=list(RULES), choices=list(RULES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int)
    p.add_argument("--n-train", type=int)
    p.add_argument("--pretrain-epochs", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out")
    p.add_argument("--gen-python", default=sys.executable, help="photo2：装有 scikit-image 和 ultralytics 的 Python")
    p.add_argument("--render", action="store_true", help="只按已有的结果 JSON 重写 docs/training.md 的表")
    a = p.parse_args(argv)
    if a.render:
        rows = json.loads((RESULTS / f"batch_rule_{a.mode}.json").read_text(encoding="utf-8"))["rows"]
        write_doc_table(a.mode, rows)
        return {"rows": rows}
    import torch

    torch.set_num_threads(a.threads)
    mode = MODES[a.mode]
    batches, epochs, n_train = a.batches or mode["batches"], a.epochs or mode["epochs"], a.n_train or mode["n_train"]
    out = Path(a.out) if a.out else RESULTS / f"batch_rule_{a.mode}.json"
    meta = {
        **run_meta(a.threads, len(a.seeds), sys.argv if argv is None else argv),
        "mode": a.mode,
        "variant": "atto",
        "n_train": n_train,
        "n_val": 16,
        "image_size": 96,
        "epochs": epochs,
        "reference_batch": 128,
    }
    rows = []
    with TemporaryDirectory() as tmp:
        tune = None
        if a.mode == "tune":
            tune, pre = pretrain(Path(tmp), a.pretrain_epochs)
            meta["pretrain"] = {"epochs": a.pretrain_epochs, "n_train": 160, "classes": 80, "used_classes": 8, **pre}
            print("pretrained", meta["pretrain"], flush=True)
        base = TINY
        if a.mode == "demo":
            from deimv2.data.demo import prepare_demo_coco
            from deimv2.tutorial.demo import demo_overrides

            data, base = prepare_demo_coco(Path(tmp) / "demo"), demo_overrides(256, recipe="small")
            meta.update(n_train=None, n_val=None, image_size=256, dataset="the bundled demo (its own valid split)")
        elif a.mode == "photo2":
            data, base = photo2_data(Path(tmp), a.gen_python), {"HGNetv2.pretrained": False}
            meta.update(n_train=GEN_TRAIN, n_val=GEN_VALID, image_size=320, dataset=photo2_splits())
        else:
            data = make_coco_dataset(Path(tmp) / "data", n_train=n_train, n_val=16, seed=1)
        for seed in a.seeds:
            for batch in batches:
                for rule in a.rules:  # the rules side by side for each seed and batch
                    out_dir = Path(tmp) / f"{rule}_{batch}_{seed}"
                    r = one_run(data, out_dir, rule, batch, epochs, seed, tune, base)
                    rows.append({"rule": rule, "batch": batch, "seed": seed, "epochs": epochs, **r})
                    print(rows[-1], flush=True)
                    write_results(out, meta, rows)  # partial results survive an interrupted run
    write_results(out, meta, rows)
    if out.resolve() == (RESULTS / f"batch_rule_{a.mode}.json").resolve():
        write_doc_table(a.mode, rows)
    return {"meta": meta, "rows": rows}


if __name__ == "__main__":
    main()
