"""``deimv2 demo``: the whole tutorial pipeline headless on the bundled data.

convert (YOLO → COCO) → check (dataset doctor) → train (DEIMv2-Atto from scratch, CPU is fine)
→ evaluate (COCO mAP) → predict (images with Chinese labels). Notebooks 02–06 walk through the same steps.
Explained in notebook 02_convert.ipynb … 06_evaluate.ipynb.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from deimv2.data.demo import prepare_demo_coco
from deimv2.data.doctor import check_dataset
from deimv2.engine.api import evaluate, train
from deimv2.infer.detector import Detector
from deimv2.utils.outputs import ensure_output_dir
from deimv2.utils.runtime import fast_mode

_log = logging.getLogger(__name__)

#: the training recipe of the demo (deimv2/config/loader/recipes.py): a small dataset from scratch, the schedule that measured
#: best here. The demo's training is exactly trial small_na10_e40: benchmarks/results/recipes/small_na10_e40.json
#: (benchmarks/recipes.py; compared there with the old demo schedule and Ultralytics YOLO11n)
DEMO_RECIPE = "small"

#: demo schedule: (epochs, image size, batch size — the small recipe's —, iterations per epoch cap)
FULL_SCHEDULE = dict(epochs=40, size=256, batch_size=8, max_iters=None)
FAST_SCHEDULE = dict(epochs=2, size=160, batch_size=4, max_iters=2)


def demo_overrides(size: int, batch_size: int | None = None, recipe: str | None = None) -> dict:
    """Settings that make Atto train from scratch on a CPU: no pretrained file, no workers. With a ``recipe``
    (``deimv2 demo``, notebook 04) the recipe decides the schedule; without one (the tiny runs of notebooks 05–09)
    the milestones scale in proportion and the LRs are not rescaled for the small batch."""
    ov = {
        "HGNetv2.pretrained": False,
        "eval_spatial_size": [size, size],
        "train_dataloader.num_workers": 0,
        "val_dataloader.num_workers": 0,
        "val_dataloader.total_batch_size": 16,
        "use_amp": True,  # takes effect on CUDA only
    }
    if recipe is None:
        ov.update({"epoch_rule": "proportional", "scale_lr": False})
    if batch_size is not None:
        ov["batch_size"] = batch_size
    return ov


def run_demo(
    output_dir: str | Path = "outputs/demo", epochs: int | None = None, device: str | None = None, variant: str = "atto"
) -> dict:
    """Run the pipeline and return the final metrics (also printed with where every output went)."""
    out = ensure_output_dir(output_dir)
    sched = FAST_SCHEDULE if fast_mode() else FULL_SCHEDULE
    n_epochs = int(epochs or sched["epochs"])
    t0 = time.time()

    _log.info("【1/5】转换数据集：YOLO → COCO")
    data_dir = prepare_demo_coco(out / "dataset")
    _log.info(f"      COCO 数据集：{data_dir.resolve()}")

    _log.info("【2/5】数据集体检")
    report = check_dataset(data_dir)
    _log.info(report.format())

    _log.info(
        f"【3/5】训练 DEIMv2-{variant.upper()}（从头开始，{n_epochs} 轮，输入 {sched['size']}×{sched['size']}，"
        f"训练配方 {DEMO_RECIPE}）"
    )
    result = train(
        variant,
        data=data_dir,
        output_dir=out / "train",
        device=device,
        epochs=n_epochs,
        max_iters_per_epoch=sched["max_iters"],
        check_data=False,
        overrides=demo_overrides(sched["size"], sched["batch_size"], recipe=DEMO_RECIPE),
        recipe=DEMO_RECIPE,
    )
    run_dir = Path(result["output_dir"])  # out/train, or out/train-2 … when an earlier demo is kept
    best = run_dir / "best.pth"

    _log.info("【4/5】在验证集上评估最佳权重")
    metrics = evaluate(None, best, data=data_dir, device=device, output_dir=run_dir)

    _log.info("【5/5】推理并画框")
    pred_dir = _draw_predictions(best, sorted((data_dir / "valid").glob("*.jpg"))[:8], out, device)

    _log.info(f"\n完成！用时 {(time.time() - t0) / 60:.1f} 分钟")
    _log.info(f"  数据集（COCO）：{data_dir.resolve()}")
    _log.info(f"  权重：{best.resolve()}（另有 last.pth）")
    _log.info(f"  训练日志：{(run_dir / 'log.jsonl').resolve()}")
    _log.info(f"  评估结果：{Path(metrics.get('eval_json', run_dir / 'eval.json')).resolve()}")
    _log.info(f"  推理图片：{pred_dir.resolve()}")
    _log.info(f"  最终 mAP@0.5:0.95 = {metrics['AP']:.3f}，mAP@0.5 = {metrics['AP50']:.3f}")
    return metrics


def _draw_predictions(checkpoint: Path, images: list[Path], out: Path, device: str | None) -> Path:
    """The images with the boxes of ``checkpoint`` drawn, into ``out/predictions`` (``predictions-2`` … when an
    earlier demo's images are there: they stay as they are); returns that folder."""
    detector = Detector.from_checkpoint(checkpoint, device=device, conf=0.3)
    pred_dir, n = out / "predictions", 2
    while pred_dir.exists() and any(pred_dir.iterdir()):
        pred_dir, n = out / f"predictions-{n}", n + 1
    pred_dir.mkdir(parents=True, exist_ok=True)
    for path, pred in zip(images, detector(images)):
        pred.plot().save(pred_dir / path.name)
    return pred_dir
