"""Golden weights, input and targets shared by ``benchmarks/make_golden.py`` and the ``official`` tests.

No RNG anywhere: every tensor of a state_dict is a fixed function of (key, element index) -- an integer
hash, exact on every platform -- so the official model (in the script) and ours (in the tests) get
bit-identical weights without sharing a file. Values are scaled per tensor (fan-in for weights, near-identity
BatchNorm statistics, small biases) so activations stay O(1): outputs are neither saturated nor full of
near-ties (``make_golden.py`` checks this against a float64 run).
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import torch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "official"
VARIANTS = ("atto", "femto", "pico", "n", "s", "m", "l", "x")
#: eval size of the golden run: small enough to be fast, with at least num_queries anchors
GOLDEN_SIZE = {"atto": 320, "femto": 320, "pico": 320, "n": 320, "s": 160, "m": 160, "l": 160, "x": 160}
#: variants whose criterion loss terms are recorded (27 / 47 terms)
LOSS_VARIANTS = ("atto", "s")
#: how many queries / post-processed detections are stored (every stored value is compared)
N_QUERIES, N_DETS = 16, 30
TOL = 1e-4
#: weight variance x fan_in of convolutions and of linear layers; scale of norm layers outside the backbone
CONV_GAIN, LINEAR_GAIN, NORM_SCALE = 2.0, 1.0, 0.7

#: derived (not learned) entries: each side keeps what its own constructor computed
KEEP_SUFFIXES = (
    "num_batches_tracked",
    "up",
    "reg_scale",
    "anchors",
    "valid_mask",
    "num_points_scale",
    "periods",
    "bias_mask",
)


def _uniform(key: str, n: int) -> torch.Tensor:
    """``n`` values in [-1, 1) from an integer hash of (key, index): exact on every platform, no RNG."""
    seed = zlib.crc32(key.encode("utf-8"))
    h = (torch.arange(n, dtype=torch.int64) * 2654435761 + seed) % 2**32
    for mult in (0x45D9F3B, 0x119DE1F3):
        h = ((h ^ (h >> 16)) * mult) % 2**32
    h = h ^ (h >> 16)
    return h.to(torch.float64) / 2**31 - 1.0


def golden_tensor(key: str, shape, dtype=torch.float32) -> torch.Tensor:
    """The golden value of one state_dict entry, scaled by what the entry is (see module docstring)."""
    n = math.prod(shape)
    s = _uniform(key, n)
    last = key.rsplit(".", 1)[-1]
    if last == "running_var":
        v = 1.0 + 0.25 * (s + 1.0)  # [1, 1.5]
    elif last == "running_mean":
        v = 0.1 * s
    elif len(shape) <= 1 and last in ("weight", "scale", "gamma") or "norm" in key and last == "weight":
        v = (1.0 if key.startswith("backbone.") else NORM_SCALE) + 0.1 * s  # norm / affine scales
    elif len(shape) <= 1:
        v = 0.05 * s  # biases, layer-scales, 1-d tokens
    else:
        fan_in = max(1, n // shape[0])
        gain = CONV_GAIN if len(shape) == 4 else LINEAR_GAIN
        v = s * math.sqrt(gain * 3.0 / fan_in)  # variance gain / fan_in (like He-uniform init)
    return v.to(dtype).reshape(shape)


@torch.no_grad()
def fill_golden(model: torch.nn.Module) -> int:
    """Overwrite every learnable-or-statistic float tensor of ``model.state_dict()`` in place.

    Tied tensors (shared heads) get the value of their first key. Returns how many tensors were filled.
    """
    seen, n = set(), 0
    for key, t in model.state_dict(keep_vars=True).items():
        if not t.is_floating_point() or key.rsplit(".", 1)[-1] in KEEP_SUFFIXES:
            continue
        ptr = t.data_ptr()
        if ptr in seen:
            continue
        seen.add(ptr)
        t.data.copy_(golden_tensor(key, tuple(t.shape), t.dtype))
        n += 1
    return n


def golden_input(h: int, w: int) -> torch.Tensor:
    """A smooth deterministic image in [0, 1], [1, 3, h, w]: no two rows or columns alike."""
    y = torch.arange(h, dtype=torch.float64).view(h, 1)
    x = torch.arange(w, dtype=torch.float64).view(1, w)
    chans = [
        0.5 + 0.25 * torch.sin(0.11 * x + 0.07 * y + c) + 0.2 * torch.cos(0.031 * x * (c + 1) - 0.05 * y)
        for c in range(3)
    ]
    return torch.stack(chans).clamp(0, 1).to(torch.float32).unsqueeze(0)


def golden_targets(num_classes: int = 80) -> list[dict]:
    """Two images' fixed targets (normalised cxcywh boxes, int64 labels) for the criterion check."""
    boxes = [
        [[0.30, 0.35, 0.20, 0.30], [0.65, 0.60, 0.40, 0.25], [0.50, 0.80, 0.10, 0.12]],
        [[0.45, 0.50, 0.60, 0.55], [0.20, 0.25, 0.15, 0.20]],
    ]
    labels = [[1, 7, 23], [0, num_classes - 1]]
    return [{"boxes": torch.tensor(b), "labels": torch.tensor(lab)} for b, lab in zip(boxes, labels)]


def query_index(num_queries: int) -> torch.Tensor:
    """The stored subset of queries: ``N_QUERIES`` evenly spaced indices."""
    return torch.linspace(0, num_queries - 1, N_QUERIES).round().long()


def summarize(outputs: dict, results: list[dict] | None = None) -> dict:
    """The stored slice of a model output (and optional post-processed results) as float32/int64 tensors."""
    idx = query_index(outputs["pred_logits"].shape[1])
    out = {"pred_logits": outputs["pred_logits"][0, idx].float(), "pred_boxes": outputs["pred_boxes"][0].float()}
    if results is not None:
        r = results[0]
        out.update(
            labels=r["labels"][:N_DETS].long(), boxes=r["boxes"][:N_DETS].float(), scores=r["scores"][:N_DETS].float()
        )
    return out
