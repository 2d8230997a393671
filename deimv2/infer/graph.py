"""The deploy graph: model + post-processor (+ ImageNet normalisation) as one module, and its ONNX writer.

Used by :class:`deimv2.infer.detector.Detector` (PyTorch and ONNX Runtime backends, :mod:`deimv2.infer.backends`) and by
:mod:`deimv2.infer.export`; it sits below all three so none of them imports another to get it.
Explained in notebook ``05_inference.ipynb``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn

from deimv2.config.loader import Config
from deimv2.models.build import build_postprocessor

#: the ONNX opset of every export (the official export script uses 17)
ONNX_OPSET = 17

__all__ = ["DetectionGraph", "build_graph", "write_onnx"]


class DetectionGraph(nn.Module):
    """``(images [B,3,H,W] in [0,1], orig_target_sizes [B,2] as (w,h)) -> (labels, boxes, scores)``.

    Model and post-processor in deploy form; ImageNet normalisation inside when ``cfg.input_mean`` is set
    (DINOv3 S/M/L/X), so callers always pass plain ``/255`` pixels. Labels are 0-based (no COCO remap).
    """

    def __init__(
        self,
        model: nn.Module,
        postprocessor: nn.Module,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ):
        super().__init__()
        self.model = model
        self.postprocessor = postprocessor
        self.normalize = mean is not None
        if self.normalize:
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor, orig_target_sizes: torch.Tensor):
        if self.normalize:
            images = (images - self.mean) / self.std
        return self.postprocessor(self.model(images), orig_target_sizes)


def build_graph(model: nn.Module, cfg: Config, deploy: bool = True) -> DetectionGraph:
    """Wrap ``model`` (put in eval mode; folded in place with ``deploy=True``) into a :class:`DetectionGraph`."""
    model.eval()
    if deploy and hasattr(model, "deploy"):
        with torch.no_grad():
            model.deploy()
    post = build_postprocessor(cfg).deploy()
    return DetectionGraph(model, post, cfg.input_mean, cfg.input_std).eval()


def write_onnx(
    graph: DetectionGraph,
    cfg: Config,
    out: str | Path,
    opset: int = ONNX_OPSET,
    batch_size: int = 1,
    dynamic_batch: bool = True,
    metadata: dict[str, str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Trace ``graph`` (on CPU) into the ONNX file ``out`` and check it; returns the example inputs used.
    ``metadata``: written into the file's ``metadata_props`` (``deimv2 export`` stores the config and class names
    there, so ``Detector.from_checkpoint`` can run the file)."""
    import onnx

    h, w = (int(v) for v in cfg.eval_spatial_size)
    images = torch.rand(batch_size, 3, h, w)
    sizes = torch.tensor([[w, h]] * batch_size, dtype=torch.int64)
    axes = {n: {0: "N"} for n in ("images", "orig_target_sizes", "labels", "boxes", "scores")}
    with torch.no_grad(), warnings.catch_warnings():
        # tracer notes about shape-dependent Python branches: those shapes are fixed by the eval size
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*[Cc]onstant folding.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # "legacy TorchScript-based exporter"
        graph(images, sizes)  # warm the lazily built buffers (anchors) before tracing
        # The TorchScript exporter, explicitly: the dynamo exporter (default since torch 2.9) fails on this model.
        torch.onnx.export(
            graph,
            (images, sizes),
            str(out),
            input_names=["images", "orig_target_sizes"],
            output_names=["labels", "boxes", "scores"],
            opset_version=int(opset),
            dynamic_axes=axes if dynamic_batch else None,
            do_constant_folding=True,
            dynamo=False,
        )
    model = onnx.load(str(out))
    if metadata:
        for key, value in metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = str(key), str(value)
        onnx.save(model, str(out))
    onnx.checker.check_model(model)
    return images, sizes
