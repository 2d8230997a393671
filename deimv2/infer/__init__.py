"""Inference: from a trained checkpoint to boxes, drawn files, ONNX and timings.

- :mod:`.detector` — :class:`Detector` (images in, :class:`Prediction` out) and :func:`load_detector`;
- :mod:`.run` — the file / folder / video runner behind ``deimv2 predict``; :mod:`.stream` decodes ahead of it;
- :mod:`.backends` — PyTorch, OpenVINO and ONNX Runtime behind one interface; :mod:`.graph` the deploy graph;
- :mod:`.export` — ONNX export; :mod:`.bench` — latency;
- :mod:`.draw` and :mod:`.show` — Chinese labels on images and notebook grids;
- :mod:`.interop`, :mod:`.tiling`, :mod:`.tracking` — supervision, tiled inference, ByteTrack.

Explained in notebook ``05_inference.ipynb`` (and ``10_applications.ipynb``).
"""

from __future__ import annotations

import lazy_loader

# the names a notebook or a user's script needs, imported on first use
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "detector": ["Detector", "load_detector"],
        "results": ["Prediction"],
        "run": ["predict_cli"],
        "show": ["show_predictions"],
        "export": ["export_onnx"],
        "draw": ["draw_detections", "show_grid"],
    },
)
