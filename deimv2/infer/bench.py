"""Latency benchmark of the eval-mode model (``deimv2 bench``), also used by ``benchmarks/latency.py``.

Batch 1 at the variant's eval size, ``torch.inference_mode()``, warm-up runs first, then the median
of repeated runs; the thread count is stated. Explained in notebook ``01_weights.ipynb``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch.utils.flop_counter import FlopCounterMode

from deimv2.config.loader import Config
from deimv2.data.demo import demo_dataset_dir
from deimv2.data.mscoco import MSCOCO_CATEGORY_IDS, MSCOCO_CATEGORY_NAMES
from deimv2.engine.checkpoint import make_checkpoint, save_checkpoint
from deimv2.errors import DEIMv2Error
from deimv2.infer.backends import package_version, runtime_available
from deimv2.infer.detector import Detector, load_detector
from deimv2.models.build import build_model, build_postprocessor
from deimv2.utils.outputs import OutputError
from deimv2.utils.runtime import time_fn

_log = logging.getLogger(__name__)


def bench_variant(
    variant: str,
    device: str = "cpu",
    runs: int = 10,
    warmup: int = 2,
    deploy: bool = False,
    with_postprocess: bool = True,
) -> dict:
    """Eval latency of one variant with random weights (weights do not change the compute)."""
    dev = torch.device(device)
    model = build_model(variant).to(dev).eval()
    post = build_postprocessor(model.config).to(dev)
    if deploy:
        model.deploy()
        post.deploy()
    h, w = model.config.eval_spatial_size
    x = torch.rand(1, 3, h, w, device=dev)
    sizes = torch.tensor([[w, h]], device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else None

    def run():
        with torch.inference_mode():
            out = model(x)
            if with_postprocess:
                post(out, sizes)

    result = time_fn(run, runs=runs, warmup=warmup, sync=sync)
    result.update(
        variant=variant,
        input=f"{h}x{w}",
        device=str(dev),
        threads=torch.get_num_threads(),
        deploy=deploy,
        params=sum(p.numel() for p in model.parameters()),
    )
    return result


def run_latency_benchmark(
    variants: Iterable[str], threads: int = 2, runs: int = 10, device: str = "cpu", deploy: bool = False
) -> list[dict]:
    """Print and return a latency table for ``variants``."""
    torch.set_num_threads(int(threads))
    rows = []
    _log.info(f"设备 {device}，线程数 {torch.get_num_threads()}，batch 1，预热 2 次后取 {runs} 次的中位数（随机权重）")
    _log.info(f"{'变体':<6}{'输入':>10}{'中位数 ms':>12}{'最小 ms':>10}{'参数量':>12}")
    for v in variants:
        r = bench_variant(v, device=device, runs=runs, deploy=deploy)
        rows.append(r)
        _log.info(f"{v:<6}{r['input']:>10}{r['median_ms']:>12.1f}{r['min_ms']:>10.1f}{r['params'] / 1e6:>11.2f}M")
    return rows


# --------------------------------------------------------------------------- backends side by side
METHODS = (
    "official_eager",
    "official_eager_cl_input",
    "eager",
    "deploy",
    "onnxruntime",
    "openvino",
    "file_to_boxes",
    "file_to_boxes_torch",
)
RUNTIMES = ("onnxruntime", "openvino")
METHOD_NAMES = {
    "official_eager": "官方 eager（model.eval() + PostProcessor）",
    "official_eager_cl_input": "官方 eager，channels-last 输入",
    "eager": "我们 eager",
    "deploy": "我们 deploy（torch，HGNetv2 用 channels-last）",
    "onnxruntime": "我们 onnxruntime",
    "openvino": "我们 OpenVINO（float32）",
    "file_to_boxes": "文件→检测框（Detector 默认后端）",
    "file_to_boxes_torch": "文件→检测框（backend='torch'）",
}
_MARK = "@@DEIMV2_BACKENDS@@"


def calibrate_bn(model: torch.nn.Module, h: int, w: int) -> None:
    """Measure BN statistics on random images, so random weights give distinct scores like trained ones."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.momentum = None
        m.reset_running_stats()
    model.train()
    with torch.no_grad():
        model.encoder(model.backbone(torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0))))
    model.eval()


def _load_official(official: str, variant: str):
    """The official model via ``benchmarks/latency.py`` (``load_official``) of this git checkout."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "latency.py"
    if not script.is_file():
        raise DEIMv2Error(f"与官方代码对比需要本项目的 git 仓库（找不到 {script}）。请在 git clone 的仓库里运行。")
    spec = importlib.util.spec_from_file_location("deimv2_bench_latency", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.load_official(official, variant)


def default_image(folder):
    """A 640x480 JPEG (quality 90) made from the first demo image (a photo), else from smooth noise."""
    out = Path(folder) / "测试 图片 640x480.jpg"
    try:
        src = min((demo_dataset_dir() / "valid").rglob("*.jpg"))
        img = Image.open(src).convert("RGB")
    except Exception:  # noqa: BLE001 - no demo data in a wheel install: any photo-like image will do
        rng = np.random.default_rng(0)
        img = Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).filter(ImageFilter.GaussianBlur(2))
    img.resize((640, 480), Image.BICUBIC).save(out, quality=90)
    return out


def _same_topk(labels_a, boxes_a, scores_a, labels_b, boxes_b, scores_b, scale: float, k: int = 10) -> dict:
    k = min(k, len(scores_a), len(scores_b))
    d_scores = float((scores_a[:k] - scores_b[:k]).abs().max()) if k else 0.0
    d_boxes = float((boxes_a[:k] - boxes_b[:k]).abs().max()) if k else 0.0
    same = bool(torch.equal(labels_a[:k].long(), labels_b[:k].long())) and d_scores < 1e-4 and d_boxes < 1e-3 * scale
    return {
        "top_k": k,
        "labels_equal": bool(torch.equal(labels_a[:k].long(), labels_b[:k].long())),
        "max_abs_scores": d_scores,
        "max_abs_boxes": d_boxes,
        "identical": same,
    }


def model_gflop(model: torch.nn.Module, h: int, w: int) -> float:
    """GFLOP of one forward pass at ``h``×``w``, batch 1 (``torch.utils.flop_counter``: 2 per multiply-add)."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, h, w))
    return counter.get_total_flops() / 1e9


def sgemm_gflops(n: int = 2048, runs: int = 10) -> float:
    """float32 matrix-multiply throughput (GFLOP/s, median) of this process's threads: the machine's practical peak."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    return 2 * n**3 / time_fn(lambda: a @ b, runs=runs, warmup=2)["median_ms"] / 1e6


def backend_latency(
    variant: str | None = None,
    official: str | None = None,
    rounds: int = 3,
    runs: int = 10,
    warmup: int = 2,
    threads: int = 2,
    image=None,
    checkpoint=None,
) -> dict:
    """One variant, one process: every method timed call by call in turn, ``rounds`` × ``runs`` calls each.

    Random weights with measured BN statistics (the official model's when ``official`` is given, loaded
    strictly into ours), or the weights of ``checkpoint`` (then without the official model).
    The official model runs on a contiguous NCHW input and on the same input in channels-last strides; ratios are
    to the faster of the two (``official_best_ms``).
    ``file_to_boxes`` is ``Detector.from_checkpoint(file)`` with its default backend called on a JPEG path;
    the ONNX export it triggers once is reported as ``first_load_s``.
    """
    torch.set_num_threads(int(threads))
    torch.manual_seed(0)
    models = _models_under_test(variant, official, checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(checkpoint) if checkpoint is not None else _random_weights_checkpoint(models, tmp)
        dets = _detectors(ckpt)
        path = Path(image) if image is not None else default_image(tmp)
        pil = Image.open(path).convert("RGB")
        fns, x_off, sizes = _timed_methods(models, dets, path, pil)
        samples, per_round, load = _round_robin(fns, rounds, runs, warmup)
        checks = _detection_checks(models, dets, path, pil, x_off, sizes)
    h, w = models.size_hw
    row = {
        "variant": models.variant,
        "input": f"{h}x{w}",
        "gflop": model_gflop(models.model, h, w),
        "sgemm_gflops": sgemm_gflops(),
        "image": f"{pil.size[0]}x{pil.size[1]} JPEG",
        "default_backend": dets.default.backend.name,
        "torch_channels_last": dets.on_torch.backend.channels_last,
        "first_load_s": dets.first_load_s,
        "threads": torch.get_num_threads(),
        "rounds": rounds,
        "runs": runs,
        "warmup": warmup,
        "loadavg": [list(v) for v in load],
        "per_round_ms": per_round,
        "detections": checks,
        "identical_detections": all(c["identical"] for c in checks.values()),
    }
    return {**row, **_latency_summary(samples, per_round)}


@dataclass
class _Models:
    """What :func:`backend_latency` measures: our eager model and, when asked, the official one (same weights)."""

    variant: str
    model: torch.nn.Module
    cfg: Config
    post: torch.nn.Module
    off_model: torch.nn.Module | None = None
    off_post: torch.nn.Module | None = None

    @property
    def size_hw(self) -> tuple[int, int]:
        h, w = (int(v) for v in self.cfg.eval_spatial_size)
        return h, w


def _models_under_test(variant, official, checkpoint) -> _Models:
    """Trained weights (``checkpoint``): nothing to calibrate, no official comparison. Random weights get measured
    BN statistics; with ``official`` those of the official model, whose weights are then loaded strictly into ours."""
    if checkpoint is not None:
        model, cfg, _ = load_detector(checkpoint)
        return _Models(variant or cfg.name, model.eval(), cfg, build_postprocessor(cfg))
    model = build_model(variant)
    cfg = model.config
    h, w = (int(v) for v in cfg.eval_spatial_size)
    off_model = off_post = None
    if official:
        ocfg = _load_official(official, variant)
        off_model, off_post = ocfg.model, ocfg.postprocessor
        calibrate_bn(off_model, h, w)
        model.load_state_dict(off_model.state_dict(), strict=True)
    else:
        calibrate_bn(model, h, w)
    return _Models(variant, model.eval(), cfg, build_postprocessor(cfg), off_model, off_post)


def _random_weights_checkpoint(models: _Models, folder) -> Path:
    """The random weights as a training checkpoint (80 COCO class names), so they load as a user's file does."""
    ckpt = make_checkpoint(
        model=models.model,
        epoch=0,
        global_step=0,
        best_ap=0.0,
        config=models.cfg.raw,
        class_names=list(MSCOCO_CATEGORY_NAMES),
        category_ids=list(MSCOCO_CATEGORY_IDS),
    )
    return save_checkpoint(ckpt, Path(folder) / "权重" / "best.pth")


@dataclass
class _Detectors:
    default: Detector  # what a user gets by default
    on_torch: Detector  # backend="torch"
    runtimes: dict  # every installed CPU runtime, also those auto did not pick
    first_load_s: float  # the default Detector's first load, with the ONNX export it triggers


def _detectors(ckpt: Path) -> _Detectors:
    t0 = time.perf_counter()
    det = Detector.from_checkpoint(ckpt)
    first_load_s = time.perf_counter() - t0
    det_t = Detector.from_checkpoint(ckpt, backend="torch")
    runtimes = {
        name: det if det.backend.name == name else Detector.from_checkpoint(ckpt, backend=name)
        for name in RUNTIMES
        if runtime_available(name)
    }
    return _Detectors(det, det_t, runtimes, first_load_s)


def _timed_methods(models: _Models, dets: _Detectors, path: Path, pil) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """``(method -> call, the official model's input, the original sizes)``, all on the same image."""
    x, sizes = dets.on_torch.preprocess([pil])  # float [1,3,H,W]: the torch backend's input
    x_nchw = x.contiguous()  # eager models (ours and the official) timed on a contiguous NCHW tensor
    inputs = {name: d.preprocess([pil])[0] for name, d in dets.runtimes.items()}  # each runtime's own input form
    model, post, cfg = models.model, models.post, models.cfg
    fns = {
        "eager": lambda: post(model(x_nchw), sizes),
        "deploy": lambda: dets.on_torch.backend(x, sizes),  # deploy graph, channels-last where CHANNELS_LAST_CPU
        **{name: (lambda d=d, xi=inputs[name]: d.backend(xi, sizes)) for name, d in dets.runtimes.items()},
        "file_to_boxes": lambda: dets.default(path),
        "file_to_boxes_torch": lambda: dets.on_torch(path),
    }
    x_off = x_nchw  # the official model wants ImageNet-normalised input for DINOv3 variants (we normalise inside)
    if cfg.input_mean is not None:
        mean, std = torch.tensor(cfg.input_mean).view(1, 3, 1, 1), torch.tensor(cfg.input_std).view(1, 3, 1, 1)
        x_off = ((x_nchw - mean) / std).contiguous()
    if models.off_model is not None:
        # the official model timed on both input layouts, and compared with the faster one: a contiguous NCHW
        # tensor (tools/inference/torch_inf.py: ToTensor + unsqueeze) and the channels-last strided batch that
        # its val DataLoader's collate (torch.cat of permuted HWC images) gives, which the convolutions propagate
        x_off_cl = x_off.contiguous(memory_format=torch.channels_last)
        off_model, off_post = models.off_model, models.off_post
        fns = {
            "official_eager": lambda: off_post(off_model(x_off), sizes),
            "official_eager_cl_input": lambda: off_post(off_model(x_off_cl), sizes),
            **fns,
        }
    return fns, x_off, sizes


def _round_robin(fns: dict, rounds: int, runs: int, warmup: int) -> tuple[dict, list, list]:
    """``(method -> all call times, per round the median of each method, load averages before and after)``, ms.

    Call by call in turn, so every method sees the same machine load; each round starts at another method and
    every other round goes backwards."""
    names = list(fns)
    samples = {k: [] for k in names}
    per_round = []
    load = [os.getloadavg()] if hasattr(os, "getloadavg") else []
    with torch.inference_mode():
        for k in names:
            for _ in range(warmup):
                fns[k]()
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            order = order if r % 2 == 0 else order[::-1]
            times = {k: [] for k in names}
            for _ in range(runs):
                for k in order:
                    t0 = time.perf_counter()
                    fns[k]()
                    times[k].append((time.perf_counter() - t0) * 1000)
            per_round.append({k: statistics.median(v) for k, v in times.items()})
            for k in names:
                samples[k].extend(times[k])
    load += [os.getloadavg()] if hasattr(os, "getloadavg") else []
    return samples, per_round, load


def _detection_checks(models: _Models, dets: _Detectors, path: Path, pil, x_off, sizes) -> dict:
    """Whether the default backend's top detections equal the torch backend's (and the official model's)."""
    checks = {}
    with torch.inference_mode():
        pred, pred_t = dets.default(path, conf=0.0), dets.on_torch(path, conf=0.0)
        scale = max(1.0, max(pil.size) / 1000)
        checks["vs_torch"] = _same_topk(
            pred.labels, pred.boxes, pred.scores, pred_t.labels, pred_t.boxes, pred_t.scores, scale
        )
        if models.off_model is not None:
            off_post = models.off_post
            o = off_post(models.off_model(x_off), sizes)[0]
            ours_labels = torch.tensor(pred.category_ids if off_post.remap_mscoco_category else pred.labels.tolist())
            checks["vs_official"] = _same_topk(
                ours_labels, pred.boxes, pred.scores, o["labels"], o["boxes"], o["scores"], scale
            )
    return checks


def _latency_summary(samples: dict, per_round: list) -> dict:
    """Median ms of each method, each runtime over the deploy graph and, with the official model, file-to-boxes over
    the official model's faster input layout."""
    row = {f"{k}_ms": statistics.median(v) for k, v in samples.items()}
    for name in RUNTIMES:
        if name in samples:
            row[f"{name}_over_deploy"] = statistics.median(m[name] / m["deploy"] for m in per_round)
    if "official_eager" in samples:
        row["official_best_ms"] = min(row["official_eager_ms"], row["official_eager_cl_input_ms"])
        ratios = [m["file_to_boxes"] / min(m["official_eager"], m["official_eager_cl_input"]) for m in per_round]
        # median of the per-round ratios: each round's methods ran under the same load, the pooled medians of
        # rounds under different loads need not be (a shared machine changes load between rounds)
        row["file_to_boxes_over_official"] = statistics.median(ratios)
        row["file_to_boxes_over_official_per_round"] = ratios
    return row


def machine_meta(threads: int, rounds: int, runs: int) -> dict:
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": threads,
        "rounds": rounds,
        "runs": runs,
    }
    for name in ("onnxruntime", "openvino"):
        meta[name] = package_version(name)
    if hasattr(os, "getloadavg"):
        meta["loadavg_start"] = list(os.getloadavg())
    return meta


def print_backend_table(row: dict) -> None:
    """One table: method, median ms, ratio to the official eager model (when measured)."""
    base = row.get("official_best_ms")  # the faster of the official model's two input layouts
    _log.info(
        f"\n{row['variant']}（输入 {row['input']}，图片 {row['image']}，默认后端 {row['default_backend']}，"
        f"{row['threads']} 线程，{row['rounds']} 轮交替 × {row['runs']} 次，中位数）"
    )
    _log.info(f"  {'方式':<34}{'ms':>9}{'相对官方（两种输入中较快的）':>16}")
    for k in METHODS:
        if f"{k}_ms" in row:
            ratio = f"{row[f'{k}_ms'] / base:.2f}×" if base else "—"
            _log.info(f"  {METHOD_NAMES[k]:<34}{row[f'{k}_ms']:>9.1f}{ratio:>16}")
    for name, c in row["detections"].items():
        other = "PyTorch" if name == "vs_torch" else "官方模型"
        _log.info(
            f"  检测结果与{other}{'一致' if c['identical'] else '不一致'}（前 {c['top_k']} 个：类别"
            f"{'相同' if c['labels_equal'] else '不同'}，分数差 {c['max_abs_scores']:.1e}，框差 {c['max_abs_boxes']:.1e} 像素）"
        )
    _log.info(f"  首次加载（含导出 ONNX）{row['first_load_s']:.1f} s，之后直接读缓存。")
    if "gflop" in row:  # how close the default backend's model call already is to the machine's matmul peak
        rt = row["default_backend"] if f"{row['default_backend']}_ms" in row else "deploy"
        _log.info(
            f"  计算量 {row['gflop']:.2f} GFLOP；{METHOD_NAMES[rt]} 每秒完成 {row['gflop'] / row[f'{rt}_ms'] * 1e3:.0f} GFLOP，"
            f"这台机器 {row['threads']} 线程 float32 大矩阵乘约 {row['sgemm_gflops']:.0f} GFLOP/s。"
        )


def run_backend_benchmark(
    variants: Iterable[str],
    official: str | None = None,
    rounds: int = 3,
    runs: int = 10,
    warmup: int = 2,
    threads: int = 2,
    image=None,
    json_path=None,
    checkpoint=None,
) -> dict:
    """Each variant in a fresh subprocess (the official config loader leaks state); tables + optional JSON.

    With ``checkpoint`` one table for its weights (``variants`` and ``official`` are not used)."""
    if json_path:
        check_results_json_target(Path(json_path))  # before minutes of measuring, not after
    result = {"meta": machine_meta(threads, rounds, runs), "variants": {}}
    for v in [Path(checkpoint).stem] if checkpoint is not None else variants:
        cmd = [sys.executable, "-m", "deimv2.infer.bench", "--worker", v, "--rounds", str(rounds), "--runs", str(runs)]
        cmd += ["--warmup", str(warmup), "--threads", str(threads)]
        cmd += (["--official", str(official)] if official else []) + (["--image", str(image)] if image else [])
        cmd += ["--checkpoint", str(checkpoint)] if checkpoint is not None else []
        row = _run_worker(v, cmd)
        if row is not None:
            result["variants"][v] = row
            print_backend_table(row)
    if hasattr(os, "getloadavg"):
        result["meta"]["loadavg_end"] = list(os.getloadavg())
    if json_path:
        out = Path(json_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".part")
        tmp.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, out)  # never a half-written file
        _log.info(f"结果已写入 {json_path}")
    return result


def _run_worker(name: str, cmd: list[str]) -> dict | None:
    """The row that a :func:`_worker` subprocess printed, or None (said, with the end of its output) when it failed."""
    proc = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace", check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(_MARK)]
    if not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        _log.info(f"{name}：测量失败（退出码 {proc.returncode}）\n{tail}")
        return None
    return json.loads(lines[-1][len(_MARK) :])


def check_results_json_target(path: Path) -> None:
    """``--json`` may replace an earlier ``deimv2 bench`` result, never another file (or a folder)."""
    if not path.exists():
        return
    ours = False
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            ours = isinstance(old, dict) and {"meta", "variants"} <= set(old)
        except (OSError, UnicodeDecodeError, ValueError):
            ours = False
    if not ours:
        raise OutputError(
            f"--json {path} 已存在，而且不是 deimv2 bench 的结果文件，没有覆盖它。"
            f"修复：换一个文件名，例如 --json {path.with_name(path.stem + '_bench.json')}。"
        )


def _worker(argv) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("variant")
    p.add_argument("--official")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--image")
    p.add_argument("--checkpoint")
    a = p.parse_args(argv)
    row = backend_latency(a.variant, a.official, a.rounds, a.runs, a.warmup, a.threads, a.image, a.checkpoint)
    print(_MARK + json.dumps(row, ensure_ascii=False), flush=True)  # the worker protocol line, not a message


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        _worker(sys.argv[2:])
