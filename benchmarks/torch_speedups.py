"""Which changes make the PyTorch inference path (and the input pipeline) faster on CPU? Each one against its baseline.

Per variant, in one process, every method called in turn call by call (order rotates per round), medians
over all calls:

- ``eval_no_grad`` vs ``eval_inference_mode``: ``torch.no_grad`` vs ``torch.inference_mode`` (eval model + PostProcessor)
- ``deploy``: ``model.deploy()`` (BatchNorm folded into the convolutions, in the HGNetv2 backbone also the
  LearnableAffineBlock scale) + deploy PostProcessor, vs ``deploy_backbone_unfolded``: the deploy form before the
  HGNetv2 backbone was folded; ``onnxruntime`` vs ``onnxruntime_backbone_unfolded``: both exported to ONNX
- ``eval_channels_last_input``: the eval model fed a channels-last input (the convolutions propagate it; what
  ``Detector(model)`` runs for the families in ``deimv2.infer.backends.CHANNELS_LAST_CPU``)
- ``deploy_channels_last``: the deploy graph with channels-last weights and input (what ``backend="torch"`` runs
  for a checkpoint of those families on CPU)
- ``preprocess`` vs ``preprocess_transposed``: one 640x480 image resized to the eval size and made a contiguous
  ``[1,3,H,W]`` float tensor, by permuting the float tensor (``Detector``) or transposing the uint8 array first
- ``batch1_per_image`` vs ``batch8_per_image``: deploy graph, ms per image
- a folder of JPEGs through ``Detector`` (its ``auto`` backend for a checkpoint of this family) and
  ``deimv2.infer.stream.decoded_batches``: ``folder_sequential_per_image`` (``predict`` on the path list, decoding in
  the loop) vs a ``DataLoader`` with 0, 1 or 2 workers (``folder_workers{0,1,2}_per_image``)
- ``torch_time_share``: the share of the torch deploy graph's time per kind of kernel (attention, matmul,
  convolution, other), from the torch profiler: a kernel that is already compute-bound limits any exact speed-up
- an MP4 video (with OpenCV): frames read in the loop (``video_sequential_per_frame``) vs a background thread
  (``video_thread_per_frame``), ``deimv2.infer.stream.video_batches``

    python benchmarks/torch_speedups.py --variants atto n s --rounds 3
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from PIL import Image

from deimv2.infer.bench import calibrate_bn, default_image, machine_meta

RESULTS = Path(__file__).resolve().parent / "results"


def _make_video(path: Path, image: Path, frames: int) -> Path | None:
    try:
        import cv2
    except ImportError:
        return None
    base = np.asarray(Image.open(image).convert("RGB"))[:, :, ::-1]
    h, w = base.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))
    for i in range(frames):
        writer.write(np.ascontiguousarray(np.roll(base, 8 * i, axis=1)))
    writer.release()
    return path


def op_shares(graph, x, sizes, runs: int = 2) -> dict:
    """Share of the deploy graph's CPU time (torch profiler, self time) per kind of kernel: what bounds it."""
    kinds = {
        "attention": ("scaled_dot_product", "_softmax"),
        "matmul": ("addmm", "aten::mm", "aten::bmm", "aten::matmul"),
        "convolution": ("convolution",),
    }
    with torch.inference_mode():
        graph(x, sizes)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(runs):
                graph(x, sizes)
    totals = dict.fromkeys([*kinds, "other"], 0.0)
    for e in prof.key_averages():
        kind = next((k for k, keys in kinds.items() if any(key in e.key for key in keys)), "other")
        totals[kind] += e.self_cpu_time_total
    whole = sum(totals.values()) or 1.0
    return {k: v / whole for k, v in totals.items()}


def measure(variant: str, rounds: int, runs: int, warmup: int, n_files: int) -> dict:
    from deimv2.data.images import as_rgb_image
    from deimv2.infer.backends import CHANNELS_LAST_CPU, auto_order, family, onnxruntime_available, runtime_available
    from deimv2.infer.detector import Detector, build_graph
    from deimv2.infer.stream import decoded_batches, video_batches
    from deimv2.models import hgnetv2
    from deimv2.models.build import build_model, build_postprocessor

    torch.manual_seed(0)
    model = build_model(variant)
    cfg = model.config
    h, w = (int(v) for v in cfg.eval_spatial_size)
    calibrate_bn(model, h, w)
    post = build_postprocessor(cfg)
    graph = build_graph(copy.deepcopy(model), cfg, deploy=True)
    with mock.patch.object(hgnetv2.ConvBNAct, "convert_to_deploy", lambda self: None):  # the deploy form before
        graph_unfolded = build_graph(copy.deepcopy(model), cfg, deploy=True)
    graph_cl = build_graph(copy.deepcopy(model), cfg, deploy=True).to(memory_format=torch.channels_last)
    tmp = tempfile.mkdtemp()
    os.environ["DEIMV2_CACHE_DIR"] = str(Path(tmp) / "cache")  # the ONNX export of this random model
    backend = next((name for name in auto_order(cfg) if runtime_available(name)), "torch")
    det = Detector(copy.deepcopy(model), conf=0.45, deploy=True, backend=backend, batch_size=8)
    x = torch.rand(1, 3, h, w)
    x8 = torch.rand(8, 3, h, w)
    s1, s8 = torch.tensor([[640, 480]]), torch.tensor([[640, 480]] * 8)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    base = default_image(tmp)
    files = []
    for i in range(n_files):  # distinct files (no OS-cache sharing tricks beyond what a real folder gets)
        f = Path(tmp) / f"图 {i}.jpg"
        Image.open(base).rotate(i * 7).save(f, quality=90)
        files.append(f)
    video = _make_video(Path(tmp) / "视频 测试.mp4", base, n_files)
    pil = Image.open(base).convert("RGB")

    def no_grad_eval():
        with torch.no_grad():
            post(model(x), s1)

    def im_eval():
        with torch.inference_mode():
            post(model(x), s1)

    def im_eval_cl():
        with torch.inference_mode():
            post(model(x_cl), s1)

    def im(g, inp, sizes):
        def run():
            with torch.inference_mode():
                g(inp, sizes)

        return run

    det_torch = Detector(copy.deepcopy(model), conf=0.45, deploy=True, backend="torch")

    def preprocess():  # the torch backend's float input, made contiguous
        return det_torch.preprocess([pil])[0].contiguous()

    def preprocess_transposed():  # the alternative: HWC -> CHW in numpy while still uint8
        arr = np.ascontiguousarray(np.asarray(pil.resize((w, h), Image.BILINEAR)).transpose(2, 0, 1))
        return torch.from_numpy(arr[None]).float().div_(255.0)

    assert torch.equal(preprocess(), preprocess_transposed())

    def folder_sequential():
        det.predict(files, keep_images=False)

    def folder_workers(n):
        def run():
            for batch in decoded_batches(files, as_rgb_image, det.batch_size, n):
                det.predict([im for _, im, _ in batch], keep_images=False)

        return run

    def video_run(threaded):
        import cv2

        def run():
            cap = cv2.VideoCapture(str(video))
            try:
                for batch in video_batches(cap, det.batch_size, threaded=threaded):
                    det.predict(batch, keep_images=False)
            finally:
                cap.release()

        return run

    fns = {
        "eval_no_grad": no_grad_eval,
        "eval_inference_mode": im_eval,
        "eval_channels_last_input": im_eval_cl,
        "deploy_backbone_unfolded": im(graph_unfolded, x, s1),
        "deploy": im(graph, x, s1),
        "deploy_channels_last": im(graph_cl, x_cl, s1),
        "preprocess": preprocess,
        "preprocess_transposed": preprocess_transposed,
        "batch1_per_image": im(graph, x, s1),
        "batch8_per_image": im(graph, x8, s8),
        "folder_sequential_per_image": folder_sequential,
        "folder_workers0_per_image": folder_workers(0),
        "folder_workers1_per_image": folder_workers(1),
        "folder_workers2_per_image": folder_workers(2),
    }
    if onnxruntime_available():  # the same two deploy forms exported and run in onnxruntime
        from deimv2.infer.backends import ort_session
        from deimv2.infer.export import write_onnx

        feeds = {"images": x.numpy(), "orig_target_sizes": s1.numpy()}
        for name, g in (("onnxruntime_backbone_unfolded", graph_unfolded), ("onnxruntime", graph)):
            write_onnx(g, cfg, Path(tmp) / f"{name}.onnx")
            fns[name] = (lambda sess: lambda: sess.run(None, feeds))(ort_session(Path(tmp) / f"{name}.onnx"))
    if video is not None:
        fns["video_sequential_per_frame"] = video_run(False)
        fns["video_thread_per_frame"] = video_run(True)
    per_image = {k: (8 if k.startswith("batch8") else n_files) for k in fns if k.endswith(("image", "frame"))}
    per_image["batch1_per_image"] = 1
    names = list(fns)
    samples = {k: [] for k in names}
    for k in names:  # warm-up (first calls allocate, export, start workers ...)
        for _ in range(1 if k.startswith(("folder", "video")) else warmup):
            fns[k]()
    for r in range(rounds):  # call by call in turn, so that load changes hit every method alike
        order = names[r % len(names) :] + names[: r % len(names)]
        order = order if r % 2 == 0 else order[::-1]
        for i in range(runs):
            for k in order:
                if k.startswith(("folder", "video")) and i >= max(2, runs // 4):
                    continue  # the whole folder / video per call: fewer calls
                t0 = time.perf_counter()
                fns[k]()
                samples[k].append((time.perf_counter() - t0) * 1000 / per_image.get(k, 1))
    row = {
        "variant": variant,
        "family": family(cfg),
        "input": f"{h}x{w}",
        "folder_images": n_files,
        "video_frames": n_files if video is not None else 0,
        "image": "640x480 JPEG",
        "folder_backend": det.backend.name,
    }
    row.update({f"{k}_ms": statistics.median(v) for k, v in samples.items()})
    cl = family(cfg) in CHANNELS_LAST_CPU  # what backend="torch" runs on CPU
    row["torch_time_share"] = op_shares(graph_cl if cl else graph, x_cl if cl else x, s1)
    row["loadavg"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    shutil.rmtree(tmp, ignore_errors=True)
    return row


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["atto", "n", "s"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--json", default=str(RESULTS / "torch_speedups_cpu2.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    result = {"meta": machine_meta(a.threads, a.rounds, a.runs), "variants": {}}
    for v in a.variants:
        row = measure(v, a.rounds, a.runs, a.warmup, a.files)
        result["variants"][v] = row
        print(f"\n{v}（{row['input']}，{a.threads} 线程，{a.rounds} 轮交替，中位数 ms）")
        for k, val in row.items():
            if k.endswith("_ms"):
                print(f"  {k[:-3]:<28}{val:>9.1f}")
        print("  torch 耗时占比：" + "，".join(f"{k} {v:.0%}" for k, v in row["torch_time_share"].items()))
    result["meta"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"结果已写入 {a.json}")
    return result


if __name__ == "__main__":
    main()
