"""Which changes make the PyTorch inference path faster on CPU? Each one measured against its baseline.

Per variant, in one process, interleaved rounds (order rotates), medians over all runs:

- ``eval_no_grad`` vs ``eval_inference_mode``: ``torch.no_grad`` vs ``torch.inference_mode`` (eval model + PostProcessor)
- ``deploy``: ``model.deploy()`` (BatchNorm folded into the convolutions) + deploy PostProcessor
- ``deploy_channels_last``: the deploy graph with channels-last weights and input
- ``batch1_per_image`` vs ``batch8_per_image``: deploy graph, ms per image
- folder of JPEGs through ``Detector(backend="torch")``: decoding in the main thread (``predict`` on the list)
  vs a ``DataLoader`` with 1 or 2 workers decoding and resizing ahead (``folder_main_per_image`` /
  ``folder_workers{1,2}_per_image``)

    python benchmarks/torch_speedups.py --variants atto n --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deimv2.bench import _machine_meta, default_image, time_fn

RESULTS = Path(__file__).resolve().parent / "results"


class _Folder(torch.utils.data.Dataset):
    """Decode + resize one image per item (what a DataLoader worker does ahead of the model)."""

    def __init__(self, files, size_hw):
        self.files, self.size_hw = files, size_hw

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        im = Image.open(self.files[i]).convert("RGB")
        h, w = self.size_hw
        return np.asarray(im.resize((w, h), Image.BILINEAR)), im.size


def _collate(items):
    arr = torch.from_numpy(np.stack([a for a, _ in items])).permute(0, 3, 1, 2).float().div_(255.0)
    return arr, torch.tensor([s for _, s in items], dtype=torch.int64)


def measure(variant: str, rounds: int, runs: int, warmup: int, n_files: int) -> dict:
    from deimv2.bench import _calibrate_bn
    from deimv2.models.build import build_model, build_postprocessor
    from deimv2.predict import Detector, build_graph

    torch.manual_seed(0)
    model = build_model(variant)
    h, w = (int(v) for v in model.config.eval_spatial_size)
    _calibrate_bn(model, h, w)
    post = build_postprocessor(model.config)
    import copy

    graph = build_graph(copy.deepcopy(model), model.config, deploy=True)
    graph_cl = build_graph(copy.deepcopy(model), model.config, deploy=True).to(memory_format=torch.channels_last)
    det = Detector(copy.deepcopy(model), conf=0.45, deploy=True, backend="torch", batch_size=8)
    x = torch.rand(1, 3, h, w)
    x8 = torch.rand(8, 3, h, w)
    s1, s8 = torch.tensor([[640, 480]]), torch.tensor([[640, 480]] * 8)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    tmp = tempfile.mkdtemp()
    base = default_image(tmp)
    files = []
    for i in range(n_files):  # distinct files (no OS-cache sharing tricks beyond what a real folder gets)
        f = Path(tmp) / f"图 {i}.jpg"
        Image.open(base).rotate(i * 7).save(f, quality=90)
        files.append(f)

    def no_grad_eval():
        with torch.no_grad():
            post(model(x), s1)

    def im_eval():
        with torch.inference_mode():
            post(model(x), s1)

    def im(g, inp, sizes):
        def run():
            with torch.inference_mode():
                g(inp, sizes)

        return run

    def folder_main():
        det.predict(files, keep_images=False)

    def folder_workers(n):
        def run():
            loader = torch.utils.data.DataLoader(
                _Folder(files, (h, w)), batch_size=8, num_workers=n, collate_fn=_collate
            )
            for batch, sizes in loader:
                det.backend(batch, sizes)

        return run

    fns = {
        "eval_no_grad": no_grad_eval,
        "eval_inference_mode": im_eval,
        "deploy": im(graph, x, s1),
        "deploy_channels_last": im(graph_cl, x_cl, s1),
        "batch1_per_image": im(graph, x, s1),
        "batch8_per_image": im(graph, x8, s8),
        "folder_main_per_image": folder_main,
        "folder_workers1_per_image": folder_workers(1),
        "folder_workers2_per_image": folder_workers(2),
    }
    per_image = {
        "batch8_per_image": 8,
        "folder_main_per_image": n_files,
        "folder_workers1_per_image": n_files,
        "folder_workers2_per_image": n_files,
    }
    names = list(fns)
    samples = {k: [] for k in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for k in order if r % 2 == 0 else order[::-1]:
            n = runs if k.startswith(("eval", "deploy", "batch")) else max(2, runs // 4)
            res = time_fn(fns[k], runs=n, warmup=warmup if not k.startswith("folder") else 1, keep_times=True)
            samples[k].extend(t / per_image.get(k, 1) for t in res["times"])
    row = {"variant": variant, "input": f"{h}x{w}", "folder_images": n_files, "image": "640x480 JPEG"}
    row.update({f"{k}_ms": statistics.median(v) for k, v in samples.items()})
    row["loadavg"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return row


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["atto", "n"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--json", default=str(RESULTS / "torch_speedups_cpu2.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    result = {"meta": _machine_meta(a.threads, a.rounds, a.runs), "variants": {}}
    for v in a.variants:
        row = measure(v, a.rounds, a.runs, a.warmup, a.files)
        result["variants"][v] = row
        print(f"\n{v}（{row['input']}，{a.threads} 线程，{a.rounds} 轮交替，中位数 ms）")
        for k, val in row.items():
            if k.endswith("_ms"):
                print(f"  {k[:-3]:<28}{val:>9.1f}")
    result["meta"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"结果已写入 {a.json}")
    return result


if __name__ == "__main__":
    main()
