"""INT8 against float32 for several variants (default Atto, N and S), each first trained briefly on the bundled demo.

Random weights give meaningless AP, so every variant is trained from scratch on the demo's train split (160
images) with the settings of ``deimv2 demo`` (recipe small, batch 8, ``--size``², ``--epochs`` epochs, no
pretrained backbone: S's ViT starts from random weights too), into ``--work/<variant>/train``. A finished run
with the same settings is reused unless ``--retrain``. Then, per variant, as ``benchmarks/int8.py`` does:

- quantization: NNCF post-training quantization of the OpenVINO model, calibrated on the demo's training images
  (all of them: fewer than ``deimv2.apps.quantize.CALIB_IMAGES``);
- accuracy: COCO AP / AP50 (pycocotools) of float32 (OpenVINO) and INT8 on the demo's validation split (48 images,
  whole images: they are small), confidence 0.01;
- latency: file → boxes of one validation image, 1 and 2 threads, float32 and INT8 alternating over ``--rounds``.

Every variant is trained before the first one is measured, so all latencies come from one short window.
Writes ``benchmarks/results/int8_variants_cpu2.json``::

    python benchmarks/int8_variants.py                          # atto n s, 40 epochs, 256², 2 threads
    python benchmarks/int8_variants.py --variants n --retrain   # one variant, trained again
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import torch
from int8 import alternating_latency, detector_pair, score_pair, timed_quantization

from deimv2.infer.bench import machine_meta

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "outputs" / "int8_variants"
SETTINGS = "int8_bench_settings.json"  # written into the run folder once training has returned


def train_overrides(size: int) -> dict:
    """``deimv2 demo``'s CPU settings (recipe small) for any variant: no backbone file, for S/M/L/X either."""
    from deimv2.tutorial.demo import demo_overrides

    return {**demo_overrides(size, recipe="small"), "DINOv3STAs.weights_path": None}


def finished(run_dir: Path, settings: dict) -> bool:
    """``run_dir`` holds ``best.pth`` of a run that ended, trained with exactly ``settings``."""
    marker = run_dir / SETTINGS
    if not (run_dir / "best.pth").is_file() or not marker.is_file():
        return False
    return json.loads(marker.read_text(encoding="utf-8")) == settings


def train_variant(variant: str, data: Path, run_dir: Path, settings: dict, retrain: bool = False) -> bool:
    """Train ``variant`` into ``run_dir`` unless a finished run with ``settings`` is there; True if it trained."""
    from deimv2.engine.api import train

    if not retrain and finished(run_dir, settings):
        print(f"{variant}: 沿用已训练好的 {run_dir / 'best.pth'}（加 --retrain 重新训练）")
        return False
    if run_dir.exists():
        shutil.rmtree(run_dir)  # else train() would write into a new "-2" folder
    result = train(
        variant, data=data, output_dir=run_dir, overrides=train_overrides(settings["size"]), recipe="small",
        epochs=settings["epochs"], max_iters_per_epoch=settings["max_iters_per_epoch"], seed=settings["seed"],
        check_data=False, progress=False,
    )  # fmt: skip
    if Path(result["output_dir"]).resolve() != run_dir.resolve():
        raise SystemExit(f"{variant} 的训练写到了 {result['output_dir']}，不是 {run_dir}")
    (run_dir / SETTINGS).write_text(json.dumps(settings), encoding="utf-8")
    return True


def training_summary(run_dir: Path) -> dict:
    """Epochs, wall time, and the validation AP of the last and of the best epoch, from the run's ``log.jsonl``."""
    from deimv2.engine.logger import read_log

    rows = [r for r in read_log(run_dir / "log.jsonl") if isinstance(r.get("epoch"), int)]
    best = max(rows, key=lambda r: r["AP"])
    return {
        "epochs": len(rows),
        "train_wall_s": round(sum(r.get("time_s", 0.0) for r in rows), 1),
        "final_val": {"AP": rows[-1]["AP"], "AP50": rows[-1]["AP50"]},
        "best_val": {"epoch": best["epoch"] + 1, "AP": best["AP"], "AP50": best["AP50"]},  # best.pth's epoch
    }


def batch_size(run_dir: Path) -> int:
    """The batch size the run trained with (its ``config.yaml``, as the trainer wrote it)."""
    import yaml

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    return int(cfg["train_dataloader"]["total_batch_size"])


def images(folder: Path) -> int:
    """Images listed in a COCO split folder's annotation file."""
    return len(json.loads((folder / "_annotations.coco.json").read_text(encoding="utf-8"))["images"])


def check_category_ids(det, ann_file: Path) -> None:
    """The detector's (class name, category id) pairs are the annotation file's categories: scores need them."""
    cats = json.loads(Path(ann_file).read_text(encoding="utf-8"))["categories"]
    want = sorted((c["name"], int(c["id"])) for c in cats)
    got = sorted(zip(det.class_names, (int(i) for i in det.category_ids)))
    if got != want:
        raise SystemExit(f"模型的类别 {got} 与 {ann_file} 的 categories {want} 不一致，COCO 评分会错位。")


def measure_variant(variant: str, run_dir: Path, data: Path, a: argparse.Namespace) -> dict:
    """Quantize ``run_dir/best.pth``, score both models on the validation split, time both."""
    ckpt, valid = run_dir / "best.pth", data / "valid"
    torch.set_num_threads(a.threads)
    xml, quantization = timed_quantization(ckpt, data / "train", run_dir.parent / "best_int8.xml", a.calib_limit)
    dets = detector_pair(ckpt, xml, conf=0.01)
    check_category_ids(dets["float32"], valid / "_annotations.coco.json")
    accuracy = score_pair(dets, valid)
    image = sorted(valid.glob("*.jpg"))[0]
    return {
        "input": list(dets["float32"].size_hw),
        "backends": {k: d.backend.name for k, d in dets.items()},
        "training": {"batch_size": batch_size(run_dir), **training_summary(run_dir)},
        "quantization": {"calibration_set": "demo train split", **quantization},
        "accuracy": accuracy,
        "latency": {"image": image.name, **alternating_latency(ckpt, xml, image, a.rounds, a.runs)},
    }


def main(argv: list[str] | None = None) -> dict:
    from deimv2.config.variants import VARIANT_TABLE
    from deimv2.data.demo import prepare_demo_coco

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["atto", "n", "s"], choices=list(VARIANT_TABLE))
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2, help="训练、量化和评分的线程数（延迟总是测 1 和 2 线程）")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--retrain", action="store_true", help="即使已有训练好的 best.pth 也重新训练")
    ap.add_argument("--max-iters", type=int, help="每轮最多训练几步（只用于快速试跑）")
    ap.add_argument("--calib-limit", type=int, help="最多用几张校准图（默认 300）")
    ap.add_argument("--work", default=str(WORK))
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "int8_variants_cpu2.json"))
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads)
    meta = machine_meta(a.threads, rounds=a.rounds, runs=a.runs)
    work = Path(a.work)
    data = prepare_demo_coco(work / "demo")
    settings = {"epochs": a.epochs, "size": a.size, "max_iters_per_epoch": a.max_iters, "recipe": "small", "seed": 0}
    trained = {v: train_variant(v, data, work / v / "train", settings, a.retrain) for v in a.variants}
    meta["loadavg_after_training"] = list(os.getloadavg())
    variants = {}
    for v in a.variants:
        variants[v] = {"trained_in_this_run": trained[v], **measure_variant(v, work / v / "train", data, a)}
    meta["loadavg_end"] = list(os.getloadavg())
    result = {
        "what": "INT8 (NNCF PTQ) vs float32, both OpenVINO on CPU, per variant trained on the bundled demo: "
        "COCO AP / AP50 on the demo's validation split, file -> boxes latency",
        "meta": meta,
        "data": {split: f"demo {split} split ({images(data / split)} images)" for split in ("train", "valid")},
        "training": {**settings, "from_scratch": True, "pretrained_backbone": False, "threads": a.threads},
        "variants": variants,
    }
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    for v, r in variants.items():
        acc, lat = r["accuracy"], r["latency"]
        print(
            f"{v}：AP50 float32 {acc['float32']['AP50']:.3f} / INT8 {acc['int8']['AP50']:.3f}，"
            f"AP {acc['float32']['AP']:.3f} / {acc['int8']['AP']:.3f}；文件到检测框 float32 / INT8 耗时比："
            f"1 线程 {lat['threads_1']['speedup']:.2f}×，2 线程 {lat['threads_2']['speedup']:.2f}×"
        )
    print(f"-> {a.json}")
    return result


if __name__ == "__main__":
    main()
