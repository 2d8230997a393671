"""Write the official-parity golden fixtures under ``tests/fixtures/official/`` from an official checkout.

Usage::

    git clone https://github.com/Intellindust-AI-Lab/DEIMv2 官方代码目录
    python benchmarks/make_golden.py --official 官方代码目录           # all 8 variants

For every variant, in fresh subprocesses (the official ``YAMLConfig`` leaks one config into the next):

1. ``state_dict/<variant>.json``: the official model's keys and shapes at its own config, parameter counts
   (train and after ``deploy()``), read by the layout tests.
2. ``<variant>.npz``: the official model with the golden weights of ``tests/helpers/golden.py`` (a fixed function
   of key and index, no RNG) at ``GOLDEN_SIZE[variant]``², on ``golden_input()``: a slice of ``pred_logits``, all of
   ``pred_boxes``, the post-processed top detections, and the same after ``model.deploy()``. For Atto and S
   also the criterion loss terms (train mode, ``golden_targets()``, denoising RNG seeded with 0).
3. ``lr_schedule.json``: the official ``flat_cosine_schedule`` at every iteration of three settings.
4. ``golden.json``: per variant the post-processor settings, loss terms, and how far the official fp32
   outputs are from a float64 run of the same model (small = no near-ties that rounding could flip).

Tests (``tests/models/test_official_golden.py``) rebuild our model with the same weights and compare.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
from helpers.golden import (  # noqa: E402  (after the sys.path insert above)
    FIXTURES,
    GOLDEN_SIZE,
    LOSS_VARIANTS,
    N_DETS,
    VARIANTS,
    fill_golden,
    golden_input,
    golden_targets,
    query_index,
    summarize,
)
from latency import emit, load_official, max_abs_diff, run_worker  # noqa: E402

ORIG_SIZE = (640, 480)  # (w, h) the post-processor scales boxes to


def keys_worker(official: str, variant: str) -> dict:
    """Key/shape layout of the official model at its own config (random init; values unused)."""
    from deimv2.config.loader import VARIANTS as CONFIG_NAMES

    cfg = load_official(official, variant)
    model = cfg.model
    sd = model.state_dict()
    total = sum(p.numel() for p in model.parameters())
    model.deploy()
    ref = {
        "variant": variant,
        "config": f"{CONFIG_NAMES[variant]}.yml",
        "total_params": total,
        "total_params_deploy_mode": sum(p.numel() for p in model.parameters()),
        "state_dict": {k: list(v.shape) for k, v in sd.items()},
    }
    return ref


def _post_settings(post) -> dict:
    return {k: getattr(post, k) for k in ("num_classes", "use_focal_loss", "num_top_queries", "remap_mscoco_category")}


def run_fp64(model, post, x, sizes, arrays: dict, prefix: str):
    """A float64 run of the official ``model``: its stored slice, post-processed detections and the sorted
    encoder query-selection scores (``<prefix>.selection``, top ``num_queries + 1``) go into ``arrays``."""

    dec = model.decoder
    assert dec.query_select_method == "default", dec.query_select_method
    seen = {}
    select = dec._select_topk

    def capture(memory, logits, anchors, topk):  # the official selection: top-k of each anchor's best class logit
        seen["selection"] = logits.max(-1).values[0].sort(descending=True).values[: topk + 1]
        return select(memory, logits, anchors, topk)

    dec._select_topk = capture
    out = model(x.double())
    del dec._select_topk
    res = post(out, sizes.double())
    if isinstance(res, tuple):  # deploy post-processor: (labels, boxes, scores)
        res = [{"labels": res[0][0], "boxes": res[1][0], "scores": res[2][0]}]
    for k, v in summarize(out, res).items():
        arrays[f"{prefix}.{k}"] = (v.double() if v.is_floating_point() else v).numpy()
    for k in ("pred_logits", "pred_boxes", "boxes", "scores"):  # summarize() casts to float32: keep float64
        src = out[k][0] if k.startswith("pred_") else res[0][k]
        arrays[f"{prefix}.{k}"] = _slice_like(src, k, out).double().numpy()
    arrays[f"{prefix}.selection"] = seen["selection"].double().numpy()
    return out, res


def _slice_like(t, name: str, out):
    """The same slice of ``t`` that :func:`golden.summarize` stores for ``name``, kept in its own dtype."""
    if name == "pred_logits":
        return t[query_index(out["pred_logits"].shape[1])]
    if name in ("boxes", "scores"):
        return t[:N_DETS]
    return t


def min_gaps(arrays: dict, prefix: str) -> dict:
    """Smallest float64 gaps between neighbours in the encoder's query ranking and the stored detections' scores:
    far above float64 rounding, so no CPU can reorder them in a float64 run."""
    sel, det = arrays[f"{prefix}.selection"], arrays[f"{prefix}.scores"]
    return {"selection": float((sel[:-1] - sel[1:]).min()), "scores": float((det[:-1] - det[1:]).min())}


def golden_worker(official: str, variant: str, out_npz: str) -> dict:
    """Run the official model with golden weights; write the npz, return the JSON part."""
    import numpy as np
    import torch

    torch.set_num_threads(2)
    cfg = load_official(official, variant, eval_spatial_size=[GOLDEN_SIZE[variant]] * 2)
    model, post = cfg.model, cfg.postprocessor
    filled = fill_golden(model)
    size = GOLDEN_SIZE[variant]
    x = golden_input(size, size)
    sizes = torch.tensor([list(ORIG_SIZE)])
    arrays, meta = {}, {"filled_tensors": filled, "postprocessor": _post_settings(post)}

    model.eval()
    m64, post64 = copy.deepcopy(model).double(), copy.deepcopy(post)
    with torch.inference_mode():
        out = model(x)
        res = post(out, sizes)
        out64, res64 = run_fp64(m64, post64, x, sizes, arrays, "eval64")
    for k, v in summarize(out, res).items():
        arrays[f"eval.{k}"] = v.numpy()
    meta["fp64_vs_fp32"] = max_abs_diff(
        [out["pred_logits"], out["pred_boxes"]], [out64["pred_logits"].float(), out64["pred_boxes"].float()]
    )
    meta["fp64_min_gap"] = min_gaps(arrays, "eval64")
    scores = torch.sigmoid(out["pred_logits"]).flatten().sort(descending=True).values
    meta["min_top_score_gap"] = (scores[:N_DETS] - scores[1 : N_DETS + 1]).min().item()  # order of the stored top

    if variant in LOSS_VARIANTS:
        train_model = copy.deepcopy(model).train()  # a copy: train mode updates BatchNorm statistics
        criterion = cfg.criterion.train()
        images = torch.cat([x, x.flip(-1)])
        targets = golden_targets(post.num_classes)
        torch.manual_seed(0)  # denoising queries come from the global RNG
        outputs = train_model(images, targets=targets)
        losses = criterion(outputs, targets, epoch=0, step=0, global_step=0, epoch_step=1)
        meta["losses"] = {k: float(v) for k, v in sorted(losses.items())}

    model.deploy()
    post.deploy()
    with torch.inference_mode():
        out_d = model(x)
        labels, boxes, scores = post(out_d, sizes)
    arrays.update({f"deploy.{k}": v.numpy() for k, v in summarize(out_d).items()})
    res_d = [{"labels": labels[0], "boxes": boxes[0], "scores": scores[0]}]
    arrays.update({f"deploy.{k}": v.numpy() for k, v in summarize(out_d, res_d).items() if k not in arrays})
    m64.deploy()  # BatchNorm folded in float64
    post64.deploy()
    with torch.inference_mode():
        run_fp64(m64, post64, x, sizes, arrays, "deploy64")
    meta["fp64_min_gap_deploy"] = min_gaps(arrays, "deploy64")
    np.savez_compressed(out_npz, **arrays)
    return meta


#: (total, warmup, flat, no_aug) iteration settings of the learning-rate schedule fixture
SCHEDULES = ((1320, 200, 640, 120), (1600, 200, 78000, 120), (37, 5, 11, 3))
SCHEDULE_LR = (5e-4, 2.5e-4)


def schedule_fixture(official: Path) -> dict:
    """The official ``flat_cosine_schedule`` (plain Python) at every iteration of three settings."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "official_lr_scheduler", official / "engine" / "optim" / "lr_scheduler.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = []
    for total, warm, flat, noaug in SCHEDULES:
        its = list(range(1, total + 5))
        rows.append(
            {
                "total": total,
                "warmup": warm,
                "flat": flat,
                "no_aug": noaug,
                "init_lr": SCHEDULE_LR[0],
                "min_lr": SCHEDULE_LR[1],
                "iters": its,
                "lr": [mod.flat_cosine_schedule(total, warm, flat, noaug, it, *SCHEDULE_LR) for it in its],
            }
        )
    return {"flat_cosine_schedule": rows}


def official_commit(official: Path) -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", str(official), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: Sequence[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        mode, official, variant, *rest = argv[1:]
        emit(keys_worker(official, variant) if mode == "keys" else golden_worker(official, variant, rest[0]))
        return {}
    p = argparse.ArgumentParser(
        description="从官方 DEIMv2 代码生成一致性测试用的 golden 数据（tests/fixtures/official/）"
    )
    p.add_argument("--official", required=True, help="官方 DEIMv2 代码目录（git clone 得到的）")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--out", default=str(FIXTURES), help="输出目录（默认 tests/fixtures/official）")
    p.add_argument("--commit", default=None, help="官方代码的 git commit（目录不是 git 仓库时手动给出）")
    a = p.parse_args(argv)
    out = Path(a.out)
    (out / "state_dict").mkdir(parents=True, exist_ok=True)
    index_path = out / "golden.json"
    index = json.loads(index_path.read_text(encoding="utf-8")) if index_path.is_file() else {"variants": {}}
    script = Path(__file__).resolve()
    import torch

    sched = schedule_fixture(Path(a.official))
    (out / "lr_schedule.json").write_text(json.dumps(sched, separators=(",", ":")) + "\n", encoding="utf-8")
    for v in a.variants:
        ref = run_worker(script, ["keys", a.official, v])
        if "error" in ref:
            raise SystemExit(f"{v}：{ref['error']}")
        lines = ",\n".join(f"{json.dumps(k)}: {json.dumps(s)}" for k, s in ref.pop("state_dict").items())
        head = json.dumps(ref, ensure_ascii=False)[:-1]
        (out / "state_dict" / f"{v}.json").write_text(f'{head}, "state_dict": {{\n{lines}\n}}}}\n', encoding="utf-8")
        meta = run_worker(script, ["golden", a.official, v, str(out / f"{v}.npz")])
        if "error" in meta:
            raise SystemExit(f"{v}：{meta['error']}")
        index["variants"][v] = meta
        print(
            f"{v}: 写入 {out / (v + '.npz')}；fp64 与 fp32 最大差 {meta['fp64_vs_fp32']:.2e}，"
            f"最高分数间最小间隔 {meta['min_top_score_gap']:.2e}"
            + (f"，{len(meta['losses'])} 个损失项" if "losses" in meta else "")
        )
    index.update(
        golden_size=GOLDEN_SIZE,
        orig_size=list(ORIG_SIZE),
        official_commit=a.commit or official_commit(Path(a.official)),
        torch=torch.__version__,
        python=platform.python_version(),
        machine=platform.machine(),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    index_path.write_text(json.dumps(index, ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"索引已写入 {index_path}")
    return index


if __name__ == "__main__":
    main()
