"""Where one training epoch's time goes: DEIMv2-Atto with ``--recipe small`` vs Ultralytics YOLO11n, same CPU.

Backs the "what limits it" of issue 14 (README 实测数据): the recipe trials (``benchmarks/recipes.py``) show Atto
needing more wall time than YOLO11n for the same 40 epochs; this script splits an Atto epoch into its parts and
compares its training compute with YOLO11n's on the same number of images.

- **Atto** (this Python): the trainer of ``small_na10_e40`` (``deimv2.tutorial.demo.demo_overrides(256, recipe="small")``,
  40 epochs, the bundled demo's 160 training images, batch 8 = 20 steps per epoch; also batch 16). One epoch in the
  strong-augmentation phase, timed per part: ``data`` (the loader's next batch: decoding + augmentation + collate),
  ``forward`` (model with targets, denoising on), ``criterion`` (matching + DEIM losses), ``backward``,
  ``step`` (grad clip + AdamW + EMA + LR schedule), then ``eval`` (one pass over the 48 validation images with
  COCO scoring, as after every epoch).
- **Atto, channels-first** (``atto_b8_cf``): the same batch-8 epoch with ``channels_last=false``, the memory
  order of the HGNetv2 variants' training before it became channels-last by default; side by side with it.
- **YOLO11n** (``--yolo-python``, a separate environment with ``ultralytics``; never a dependency of deimv2):
  ``yolo11n.yaml`` from scratch, 4 classes, 256², batch 16 (its trial's), 10 steps = 160 images of random pixels
  with 3 boxes each, timed as ``forward`` (model + its loss), ``backward``, ``step`` (SGD + its EMA). Its data
  loading and validation are not timed here.

Each side runs in a fresh subprocess pinned to ``--threads`` (default 1, as the trials), sides alternating,
``--rounds`` rounds (default 3); the JSON keeps every round and the medians::

    python benchmarks/epoch_cost.py --yolo-python yolovenv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "recipes" / "epoch_cost.json"
SIZE, EPOCHS, IMAGES = 256, 40, 160
SIDES = ("atto_b8", "atto_b8_cf", "atto_b16", "yolo11n_b16")
#: atto_b8_cf: the same epoch in channels-first memory order (``channels_last=false``, the default before issue 30)
ATTO_SIDES = tuple(s for s in SIDES if s.startswith("atto"))


def atto_epoch(batch: int, threads: int, max_steps: int | None = None, extra: dict | None = None) -> dict:
    """One timed Atto epoch (``max_steps``: stop early, for tests; ``extra``: more config overrides, e.g. the speed
    options or ``num_workers``, see ``benchmarks/train_speed.py``); its data and run folder are removed after."""
    import torch

    torch.set_num_threads(threads)
    tmp = Path(tempfile.mkdtemp(prefix="epoch_cost_"))
    try:
        return _timed_atto_epoch(batch, max_steps, tmp, extra or {})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _timed_atto_epoch(batch: int, max_steps: int | None, tmp: Path, extra: dict) -> dict:
    import torch

    from deimv2.config.recipes import merge_recipe
    from deimv2.data.demo import prepare_demo_coco
    from deimv2.engine.api import prepare_trainer
    from deimv2.tutorial.demo import demo_overrides

    user = {**demo_overrides(SIZE, recipe="small"), "epochs": EPOCHS, "train_dataloader.total_batch_size": batch}
    user.update(extra)
    overrides, _ = merge_recipe("small", user)
    t = prepare_trainer(
        "atto", data=prepare_demo_coco(tmp / "demo"), overrides=overrides, output_dir=tmp / "run", seed=0,
        progress=False,
    )  # fmt: skip
    epoch = 5  # inside the strong-augmentation phase (policy starts at epoch 4)
    t._set_epoch(epoch)
    t.train_model.train()
    t.criterion.train()
    parts = dict.fromkeys(("data", "forward", "criterion", "backward", "step"), 0.0)
    it, steps, per_epoch = iter(t.data.train_loader), 0, len(t.data.train_loader)
    while max_steps is None or steps < max_steps:
        t0 = time.perf_counter()
        try:
            images, targets = next(it)
        except StopIteration:
            break
        t1 = time.perf_counter()
        images = t.speed.prepare_images(images)
        with t._autocast():
            outputs = t.train_model(images, targets=targets)
        t2 = time.perf_counter()
        loss = sum(
            t.criterion(outputs, targets, epoch=epoch, step=steps, global_step=steps, epoch_step=per_epoch).values()
        )
        t3 = time.perf_counter()
        loss.backward()
        t4 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(t.model.parameters(), t.cfg.train.clip_max_norm)
        t.optimizer.step()
        t.optimizer.zero_grad(set_to_none=True)
        t.ema.update(t.model)
        t.scheduler.step(steps)
        t5 = time.perf_counter()
        for k, a, b in (("data", t0, t1), ("forward", t1, t2), ("criterion", t2, t3), ("backward", t3, t4)):
            parts[k] += b - a
        parts["step"] += t5 - t4
        steps += 1
    t0 = time.perf_counter()
    t.evaluate()
    parts["eval"] = time.perf_counter() - t0
    return {"batch": batch, "steps": steps, "images": steps * batch, "parts_s": parts}


def yolo_epoch(threads: int) -> dict:
    """YOLO11n's training compute on the same number of images (random pixels; needs ``ultralytics``)."""
    import torch
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.torch_utils import ModelEMA

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = DetectionModel("yolo11n.yaml", nc=4, verbose=False)
    model.args = get_cfg()  # the loss reads its box/cls/dfl gains from the default hyper-parameters
    model.train()
    ema = ModelEMA(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.937, nesterov=True)
    g = torch.Generator().manual_seed(0)
    batch, parts = 16, dict.fromkeys(("forward", "backward", "step"), 0.0)
    steps = IMAGES // batch
    for _ in range(steps):
        n = 3 * batch
        b = {
            "img": torch.rand(batch, 3, SIZE, SIZE, generator=g),
            "cls": torch.randint(0, 4, (n, 1), generator=g).float(),
            "bboxes": torch.cat(
                [0.2 + 0.6 * torch.rand(n, 2, generator=g), 0.05 + 0.3 * torch.rand(n, 2, generator=g)], 1
            ),
            "batch_idx": torch.arange(batch).repeat_interleave(3).float(),
        }
        t0 = time.perf_counter()
        loss, _ = model.loss(b)
        t1 = time.perf_counter()
        loss.sum().backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.update(model)
        t3 = time.perf_counter()
        parts["forward"] += t1 - t0
        parts["backward"] += t2 - t1
        parts["step"] += t3 - t2
    import ultralytics

    return {
        "batch": batch,
        "steps": steps,
        "images": steps * batch,
        "parts_s": parts,
        "ultralytics": ultralytics.__version__,
    }


def run_side(side: str, a: argparse.Namespace) -> dict:
    py = a.yolo_python if side.startswith("yolo") else sys.executable
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads), "YOLO_OFFLINE": "1"}
    cmd = [py, __file__, "--worker", side, "--threads", str(a.threads)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, encoding="utf-8")
    if r.returncode:
        raise SystemExit(f"{side} 失败：\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def summarize(rounds: list[dict]) -> dict:
    """Medians over rounds, per side and part, plus the training compute (forward..step) per image."""
    out = {}
    for side in SIDES:
        runs = [r[side] for r in rounds]
        parts = {k: round(statistics.median(x["parts_s"][k] for x in runs), 2) for k in runs[0]["parts_s"]}
        compute = sum(v for k, v in parts.items() if k in ("forward", "criterion", "backward", "step"))
        out[side] = {
            "images": runs[0]["images"],
            "median_parts_s": parts,
            "train_compute_s": round(compute, 2),
            "train_compute_ms_per_image": round(1000 * compute / runs[0]["images"], 1),
        }
    y = out["yolo11n_b16"]["train_compute_s"]
    for side in ATTO_SIDES:
        out[side]["train_compute_vs_yolo11n"] = round(out[side]["train_compute_s"] / y, 2)
        total = sum(out[side]["median_parts_s"].values())
        out[side]["epoch_s"] = round(total, 2)
        out[side]["share"] = {k: round(v / total, 3) for k, v in out[side]["median_parts_s"].items()}
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--yolo-python", default="yolovenv/bin/python")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        batch = int(a.worker.split("_b")[1].split("_")[0])
        extra = {"channels_last": False} if a.worker.endswith("_cf") else None
        res = yolo_epoch(a.threads) if a.worker.startswith("yolo") else atto_epoch(batch, a.threads, extra=extra)
        print(json.dumps(res))
        return
    sys.path.insert(0, str(ROOT))
    from deimv2.infer.bench import machine_meta

    meta = machine_meta(a.threads, a.rounds, 1)
    rounds = []
    for i in range(a.rounds):
        order = SIDES if i % 2 == 0 else SIDES[::-1]  # interleaved, alternating order
        rounds.append({side: run_side(side, a) for side in order})
        print(f"round {i + 1}: " + ", ".join(f"{s} {sum(r['parts_s'].values()):.1f}s" for s, r in rounds[-1].items()))
    if hasattr(os, "getloadavg"):
        meta["loadavg_end"] = list(os.getloadavg())
    result = {"meta": meta, "argv": sys.argv, "summary": summarize(rounds), "rounds": rounds}
    Path(a.out).write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps(result["summary"], ensure_ascii=False, indent=1))
    print(f"-> {a.out}")


if __name__ == "__main__":
    main()
