"""Look inside a running DEIMv2: the helpers of notebooks 07–09.

Everything here observes the real modules from the outside (forward hooks, or running the decoder
with its training-mode outputs switched on) and undoes itself afterwards: a model that never meets
these helpers runs exactly as before, and no model file imports this module.

* :func:`capture` — record the inputs/outputs of named submodules during one forward pass;
* :func:`stage_table` — shape, parameters, CPU time and FLOPs per stage (notebook 07 §1–§2);
* :func:`decoder_layers` — boxes, logits and FDR edge distributions of every decoder layer, the
  encoder's top-k proposals and the first-layer box (notebook 08 §1, §4);
* :func:`sampling_points` — deformable-attention sampling locations and weights per layer (08 §3);
* :func:`query_selection` — encoder token scores and the top-k tokens that become queries (08 §1);
* :func:`edge_distributions` — softmax over the ``reg_max + 1`` bins of each box edge (08 §4);
* :func:`teacher_gap` — how far each layer's edge distributions are from the last layer's (DDF's KL, 08 §6);
* plotting: :func:`draw_boxes`, :func:`draw_sampling_points`, :func:`plot_edge_distributions`,
  :func:`plot_stage_diagram`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deimv2.utils.box_ops import box_cxcywh_to_xyxy

__all__ = [
    "Record",
    "capture",
    "decoder_layers",
    "default_stages",
    "draw_boxes",
    "draw_sampling_points",
    "edge_distributions",
    "feature_image",
    "plot_edge_distributions",
    "plot_stage_diagram",
    "query_selection",
    "sampling_points",
    "shape_of",
    "stage_table",
    "teacher_gap",
]


# --------------------------------------------------------------------------- hooks
def _detach(x: Any) -> Any:
    if isinstance(x, Tensor):
        return x.detach()
    if isinstance(x, (list, tuple)):
        return type(x)(_detach(v) for v in x)
    if isinstance(x, Mapping):
        return {k: _detach(v) for k, v in x.items()}
    return x


def shape_of(x: Any) -> Any:
    """Shapes inside a (nested) output: a tensor -> tuple, list -> list of shapes, dict -> dict of shapes."""
    if isinstance(x, Tensor):
        return tuple(x.shape)
    if isinstance(x, (list, tuple)):
        return [shape_of(v) for v in x]
    if isinstance(x, Mapping):
        return {k: shape_of(v) for k, v in x.items() if isinstance(v, (Tensor, list, tuple))}
    return None


@dataclass
class Record:
    """One call of a hooked module: ``inputs`` (only when asked for), ``output`` and wall time in ms."""

    inputs: tuple | None
    output: Any
    ms: float


@contextmanager
def capture(model: nn.Module, names: Iterable[str], inputs: bool = False) -> Iterator[dict[str, list[Record]]]:
    """Record every call of the submodules ``names`` (dotted, as in ``model.named_modules()``).

    Yields ``{name: [Record, ...]}`` filled while the ``with`` block runs the model; a module that is
    shared (called several times, e.g. a shared box head) gets one record per call. Tensors are detached,
    not copied. All hooks are removed on exit, even after an error.
    """
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise KeyError(f"模型中没有这些子模块：{missing}。可用的名字见 model.named_modules()。")
    records: dict[str, list[Record]] = {n: [] for n in names}
    handles = []
    starts: dict[str, list[float]] = {n: [] for n in names}
    for name in names:
        mod = modules[name]

        def pre(_m, _args, name=name):
            starts[name].append(time.perf_counter())

        def post(_m, args, out, name=name):
            t0 = starts[name].pop() if starts[name] else time.perf_counter()
            ms = (time.perf_counter() - t0) * 1e3
            records[name].append(Record(_detach(args) if inputs else None, _detach(out), ms))

        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post))
    try:
        yield records
    finally:
        for h in handles:
            h.remove()


# --------------------------------------------------------------------------- stages
def default_stages(model: nn.Module) -> list[str]:
    """Main stages of a DEIM model, in execution order (backbone parts, encoder, decoder parts)."""
    names = dict(model.named_modules())
    out: list[str] = []
    bb = model.backbone
    if hasattr(bb, "stem"):  # HGNetv2
        out += ["backbone.stem"] + [f"backbone.stages.{i}" for i in range(len(bb.stages))]
    else:  # DINOv3STAs
        out += ["backbone.dinov3"] + (["backbone.sta"] if getattr(bb, "use_sta", False) else [])
    out += ["backbone", "encoder", "decoder.enc_score_head"]
    out += [f"decoder.decoder.layers.{i}" for i in range(len(model.decoder.decoder.layers))]
    out += ["decoder"]
    return [n for n in out if n in names]


def stage_table(
    model: nn.Module, images: Tensor, stages: Sequence[str] | None = None, runs: int = 1, flops: bool = True
) -> list[dict]:
    """One forward pass (``no_grad``) per run; per stage: class, output shape, parameters, median CPU ms, FLOPs.

    ``stages`` default to :func:`default_stages`. Times are inclusive (a parent contains its children);
    FLOPs come from ``torch.utils.flop_counter`` (matmul/conv/attention; grid_sample is not counted).
    Parameters of a shared module are counted once per stage that owns it.
    """
    stages = list(stages) if stages is not None else default_stages(model)
    modules = dict(model.named_modules())
    times: dict[str, list[float]] = {n: [] for n in stages}
    outputs: dict[str, Any] = {}
    with torch.no_grad():
        for _ in range(max(1, runs)):
            with capture(model, stages) as rec:
                model(images)
            for n in stages:
                times[n].append(sum(r.ms for r in rec[n]))
                if rec[n]:
                    outputs[n] = rec[n][-1].output
    counts: dict[str, int] = {}
    if flops:
        from torch.utils.flop_counter import FlopCounterMode

        with torch.no_grad(), FlopCounterMode(display=False, depth=None) as fc:
            model(images)
        root = type(model).__name__
        counts = {k: int(sum(v.values())) for k, v in fc.get_flop_counts().items()}
        counts = {k[len(root) + 1 :] if k.startswith(root + ".") else k: v for k, v in counts.items()}
    rows = []
    for n in stages:
        mod = modules[n]
        ms = sorted(times[n])
        rows.append(
            {
                "stage": n,
                "type": type(mod).__name__,
                "output": shape_of(outputs.get(n)),
                "params": sum(p.numel() for p in mod.parameters()),
                "ms": ms[len(ms) // 2] if ms else float("nan"),
                "flops": counts.get(n, 0) if flops else None,
            }
        )
    return rows


# --------------------------------------------------------------------------- decoder
@contextmanager
def _decoder_training_outputs(model: nn.Module):
    """Let the decoder return its training dict (all layers) while every norm layer keeps eval statistics."""
    dec = model.decoder
    if getattr(dec.decoder, "deployed", False):
        raise ValueError(
            "解码器已经是部署形态（deploy() 去掉了中间层的输出头），无法查看每一层：请用未 deploy 的模型。"
        )
    modes = {m: m.training for m in dec.modules()}
    try:
        dec.train()
        for m in dec.modules():
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.Dropout)):
                m.eval()
        yield
    finally:
        for m, mode in modes.items():
            m.train(mode)


def decoder_layers(model: nn.Module, images: Tensor) -> dict:
    """Every decoder layer's prediction for ``images`` (no denoising, ``no_grad``, norms in eval mode).

    Returns ``{'layers': [{'boxes' [B,Q,4] cxcywh, 'logits' [B,Q,C], 'corners' [B,Q,4*(R+1)],
    'ref_points' [B,Q,4]} for layer 0..L-1], 'pre': {'boxes', 'logits'} (layer-0 plain box head),
    'enc': {'boxes', 'logits'} (the top-k encoder proposals = initial query boxes),
    'project': W(n) [R+1], 'reg_scale': float}``. The last layer equals the eval-mode output.
    """
    with torch.no_grad():
        feats = model.encoder(model.backbone(images))
        with _decoder_training_outputs(model):
            out = model.decoder(feats, None)
    layers = [
        {
            "boxes": o["pred_boxes"],
            "logits": o["pred_logits"],
            "corners": o["pred_corners"],
            "ref_points": o["ref_points"],
        }
        for o in out.get("aux_outputs", [])
    ]
    layers.append(
        {
            "boxes": out["pred_boxes"],
            "logits": out["pred_logits"],
            "corners": out["pred_corners"],
            "ref_points": out["ref_points"],
        }
    )
    enc = out["enc_aux_outputs"][0] if out.get("enc_aux_outputs") else {}
    pre = out.get("pre_outputs") or {}

    def short(d):
        return {k.replace("pred_", ""): v for k, v in d.items()}

    return {
        "layers": layers,
        "pre": short(pre),
        "enc": short(enc),
        "project": model.decoder.decoder.project().detach(),
        "reg_scale": float(model.decoder.reg_scale),
    }


def feature_image(feat: Tensor) -> Tensor:
    """A feature map ``[C, H, W]`` as an RGB image ``[H, W, 3]`` in [0, 1]: its first 3 principal components.

    Each component is min-max scaled separately; a map with fewer than 3 channels repeats the first.
    """
    c, h, w = feat.shape
    x = feat.detach().float().reshape(c, -1).T  # [HW, C]
    x = x - x.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    comps = x @ v[: min(3, v.shape[0])].T  # [HW, k]
    while comps.shape[1] < 3:
        comps = torch.cat([comps, comps[:, :1]], 1)
    lo, hi = comps.min(0).values, comps.max(0).values
    return ((comps - lo) / (hi - lo).clamp_min(1e-12)).reshape(h, w, 3)


def edge_distributions(corners: Tensor, reg_max: int) -> Tensor:
    """``[..., 4*(reg_max+1)]`` logits -> probabilities ``[..., 4, reg_max+1]`` (edges left, top, right, bottom)."""
    return F.softmax(corners.reshape(*corners.shape[:-1], 4, reg_max + 1), dim=-1)


def teacher_gap(layers: Sequence[dict], queries, temperature: float = 5.0) -> Tensor:
    """KL(teacher ‖ layer) × T² of each decoder layer but the last (the teacher), averaged over the 4 edges and
    ``queries`` of image 0: the core term of DDF (GO-LSD's self-distillation). ``layers`` is
    ``decoder_layers(...)["layers"]``; returns ``[len(layers) - 1]``."""
    teacher = layers[-1]["corners"][0, queries]
    n_bins = teacher.shape[-1] // 4
    soft_teacher = F.log_softmax(teacher.reshape(*teacher.shape[:-1], 4, n_bins) / temperature, -1)
    gaps = []
    for layer in layers[:-1]:
        student = layer["corners"][0, queries]
        soft_student = F.log_softmax(student.reshape(*student.shape[:-1], 4, n_bins) / temperature, -1)
        kl = F.kl_div(soft_student, soft_teacher, reduction="none", log_target=True).sum(-1)
        gaps.append(kl.mean() * temperature**2)
    return torch.stack(gaps)


def sampling_points(model: nn.Module, images: Tensor) -> list[dict]:
    """Deformable cross-attention of every decoder layer, recomputed from the inputs each layer received.

    Returns per layer ``{'locations' [B,Q,heads,P,2] (x, y in [0,1]), 'weights' [B,Q,heads,P],
    'level' [P] (feature level of each point), 'reference' [B,Q,4] cxcywh, 'output' [B,Q,C]}``.
    ``P = sum(num_points)`` over levels; the weights of one head sum to 1 over all its points.
    """
    names = [f"decoder.decoder.layers.{i}.cross_attn" for i in range(len(model.decoder.decoder.layers))]
    with torch.no_grad(), capture(model, names, inputs=True) as rec:
        model(images)
    result = []
    for name in names:
        attn = dict(model.named_modules())[name]
        for r in rec[name]:
            query, ref = r.inputs[0], r.inputs[1]
            bs, nq = query.shape[:2]
            num_p = sum(attn.num_points_list)
            offsets = attn.sampling_offsets(query).reshape(bs, nq, attn.num_heads, num_p, 2)
            weights = F.softmax(attn.attention_weights(query).reshape(bs, nq, attn.num_heads, num_p), dim=-1)
            scale = attn.num_points_scale.to(query.dtype).unsqueeze(-1)
            loc = ref[:, :, None, :, :2] + offsets * scale * ref[:, :, None, :, 2:] * attn.offset_scale
            level = torch.cat([torch.full((n,), i) for i, n in enumerate(attn.num_points_list)])
            result.append(
                {
                    "locations": loc.detach(),
                    "weights": weights.detach(),
                    "level": level,
                    "reference": ref[:, :, 0].detach(),
                    "output": r.output,
                    "num_points": attn.num_points_list,
                }
            )
    return result


def query_selection(model: nn.Module, images: Tensor) -> dict:
    """Which encoder tokens become decoder queries (``query_select_method='default'``).

    Returns ``{'scores' [B,N] (max class probability of each token), 'maps': [per level [B,h,w]],
    'topk' [B,K] token indices, 'level' [B,K], 'xy' [B,K,2] token centres in [0,1], 'spatial_shapes'}``.
    """
    dec = model.decoder
    proj = [f"decoder.input_proj.{i}" for i in range(len(dec.input_proj))]
    with torch.no_grad(), capture(model, ["decoder.enc_score_head"] + proj) as rec:
        model(images)
    logits = rec["decoder.enc_score_head"][-1].output
    shapes = [list(rec[n][-1].output.shape[2:]) for n in proj]
    scores = logits.sigmoid().max(-1).values  # [B, N]
    topk = torch.topk(logits.max(-1).values, dec.num_queries, dim=-1).indices
    sizes = [h * w for h, w in shapes]
    starts = torch.tensor([0] + sizes).cumsum(0)
    level = torch.bucketize(topk, starts[1:], right=True)
    local = topk - starts[level]
    ws = torch.tensor([w for _, w in shapes])[level]
    hs = torch.tensor([h for h, _ in shapes])[level]
    xy = torch.stack([(local % ws + 0.5) / ws, (local // ws + 0.5) / hs], -1)
    maps_out = [s.reshape(-1, h, w) for s, (h, w) in zip(scores.split(sizes, dim=1), shapes)]
    return {"scores": scores, "maps": maps_out, "topk": topk, "level": level, "xy": xy, "spatial_shapes": shapes}


# --------------------------------------------------------------------------- plotting
def _axes(ax=None, figsize=(5, 5)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def draw_boxes(
    ax,
    boxes: Tensor,
    size: Sequence[int],
    fmt: str = "cxcywh",
    color="tab:red",
    labels=None,
    lw: float = 1.5,
    ls: str = "-",
):
    """Draw normalised boxes on an axis that shows an image of ``size = (w, h)`` pixels."""
    from matplotlib.patches import Rectangle

    ax = _axes(ax)
    b = box_cxcywh_to_xyxy(boxes) if fmt == "cxcywh" else boxes
    b = (b.detach().cpu().reshape(-1, 4) * torch.tensor([size[0], size[1], size[0], size[1]])).tolist()
    for i, (x1, y1, x2, y2) in enumerate(b):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=color, lw=lw, ls=ls))
        if labels is not None:
            ax.text(
                x1,
                y1,
                str(labels[i]),
                color="white",
                fontsize=8,
                va="bottom",
                bbox={"fc": color, "ec": "none", "pad": 1, "alpha": 0.8},
            )
    return ax


def draw_sampling_points(ax, image, layer: dict, query: int, batch: int = 0, title: str | None = None):
    """Sampling points of one query (all heads) on ``image``: colour = feature level, area = attention weight."""
    import numpy as np

    ax = _axes(ax)
    img = np.asarray(image)
    h, w = img.shape[:2]
    ax.imshow(img)
    loc = layer["locations"][batch, query].reshape(-1, 2).cpu()
    wt = layer["weights"][batch, query].reshape(-1).cpu()
    lvl = layer["level"].repeat(layer["locations"].shape[2]).cpu()
    colors = ["tab:red", "tab:orange", "tab:cyan", "tab:purple"]
    for level in sorted(set(lvl.tolist())):
        m = lvl == level
        ax.scatter(
            loc[m, 0] * w,
            loc[m, 1] * h,
            s=8 + 400 * wt[m],
            c=colors[level % 4],
            alpha=0.7,
            edgecolors="white",
            linewidths=0.4,
            label=f"level {level}",
        )
    draw_boxes(ax, layer["reference"][batch, query], (w, h), color="lime", lw=1.2)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_edge_distributions(
    axes, probs: Tensor, project: Tensor, edge_names=("左", "上", "右", "下"), title_prefix: str = ""
):
    """Bar charts of the 4 edge distributions ``probs [4, R+1]`` against the bin values ``W(n)``."""
    import numpy as np

    w = project.detach().cpu().numpy()
    for k, ax in enumerate(np.ravel(axes)[:4]):
        p = probs[k].detach().cpu().numpy()
        ax.bar(np.arange(len(p)), p, color="tab:blue")
        expect = float((probs[k].cpu() * project.cpu()).sum())
        ax.set_title(f"{title_prefix}{edge_names[k]}：E[W]={expect:.2f}", fontsize=9)
        ax.set_xticks([0, len(w) // 2, len(w) - 1])
        ax.set_xticklabels([f"{w[0]:.1f}", "0", f"{w[-1]:.1f}"], fontsize=7)
    return axes


def plot_stage_diagram(rows: Sequence[dict], ax=None, title: str = ""):
    """Boxes-and-arrows diagram of :func:`stage_table` rows (top to bottom), each with its output shape."""
    ax = _axes(ax, figsize=(7, 0.55 * len(rows) + 0.6))
    n = len(rows)
    for i, row in enumerate(rows):
        y = n - 1 - i
        depth = row["stage"].count(".")
        x = 0.05 + 0.06 * depth
        shape = row["output"]
        text = f"{row['stage']}  ({row['type']})   →  {_short(shape)}"
        ax.text(
            x,
            y,
            text,
            va="center",
            fontsize=8,
            family="monospace",
            bbox={"boxstyle": "round,pad=0.3", "fc": "#e8f0fe" if depth == 0 else "#f5f5f5", "ec": "#999"},
        )
        if i:
            ax.annotate(
                "", xy=(0.03, y + 0.25), xytext=(0.03, y + 0.75), arrowprops={"arrowstyle": "->", "color": "#666"}
            )
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def _short(shape: Any) -> str:
    if isinstance(shape, tuple):
        return "×".join(str(s) for s in shape)
    if isinstance(shape, list):
        return "[" + ", ".join(_short(s) for s in shape[:4]) + (", …" if len(shape) > 4 else "") + "]"
    if isinstance(shape, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in list(shape.items())[:2]) + "}"
    return str(shape)
