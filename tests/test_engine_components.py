"""Optimizer param groups (official regex semantics) and the training logger."""

import io
import json
import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from deimv2.config.loader import read_yaml
from deimv2.engine.logger import (
    JsonlLogger,
    MetricMeter,
    SmoothedValue,
    make_tensorboard_writer,
    plot_training_curves,
    read_log,
)
from deimv2.engine.optim import assign_param_groups, build_optimizer, build_param_groups
from deimv2.errors import ConfigError, DEIMv2Error

# the three groups of the official Atto config
ATTO_GROUPS = [
    {"params": "^(?=.*backbone)(?!.*norm|bn).*$", "lr": 0.001},
    {"params": "^(?=.*backbone)(?=.*norm|bn).*$", "lr": 0.001, "weight_decay": 0.0},
    {"params": "^(?=.*(?:encoder|decoder))(?=.*(?:norm|bn)).*$", "weight_decay": 0.0},
]


class Tiny(nn.Module):
    """Names like the real model: backbone.stem.conv/bn, backbone.norms.0, encoder..., decoder..."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.stem = nn.Module()
        self.backbone.stem.conv = nn.Conv2d(3, 4, 3, bias=False)  # 108
        self.backbone.stem.bn = nn.BatchNorm2d(4)  # 4 + 4
        self.backbone.norms = nn.ModuleList([nn.LayerNorm(4)])  # 4 + 4
        self.backbone.frozen = nn.Linear(2, 2)  # frozen: never in a group
        self.backbone.frozen.requires_grad_(False)
        self.encoder = nn.Module()
        self.encoder.proj = nn.Linear(4, 4)  # 16 + 4
        self.encoder.norm = nn.LayerNorm(4)  # 4 + 4
        self.decoder = nn.Module()
        self.decoder.bn = nn.BatchNorm1d(4)  # 4 + 4
        self.decoder.head = nn.Linear(4, 2)  # 8 + 2


def test_official_groups_and_regex_quirk():
    names = assign_param_groups(Tiny(), ATTO_GROUPS)
    assert names == [
        # quirk: (?!.*norm|bn) only excludes names containing "norm" (or starting with "bn"),
        # so the backbone BatchNorm lands in the first group, with weight decay
        ["backbone.stem.conv.weight", "backbone.stem.bn.weight", "backbone.stem.bn.bias"],
        ["backbone.norms.0.weight", "backbone.norms.0.bias"],
        ["encoder.norm.weight", "encoder.norm.bias", "decoder.bn.weight", "decoder.bn.bias"],
        ["encoder.proj.weight", "encoder.proj.bias", "decoder.head.weight", "decoder.head.bias"],
    ]
    # what the pattern would do without the quirk (for contrast): bn excluded from group 0
    fixed = [dict(ATTO_GROUPS[0], params="^(?=.*backbone)(?!.*(?:norm|bn)).*$")]
    assert "backbone.stem.bn.weight" not in assign_param_groups(Tiny(), fixed)[0]


def test_param_groups_settings_and_counts():
    model = Tiny()
    groups = build_param_groups(model, ATTO_GROUPS, base_lr=0.002, weight_decay=1e-4)
    got = [(sum(p.numel() for p in g["params"]), g["lr"], g["weight_decay"]) for g in groups]
    assert got == [(116, 0.001, 1e-4), (8, 0.001, 0.0), (16, 0.002, 0.0), (30, 0.002, 1e-4)]
    assert ATTO_GROUPS[0]["params"].startswith("^")  # input dicts are not modified
    opt = build_optimizer(model, ATTO_GROUPS, lr=0.002, betas=[0.9, 0.999], weight_decay=1e-4)
    assert isinstance(opt, torch.optim.AdamW) and len(opt.param_groups) == 4
    assert opt.param_groups[3]["betas"] == (0.9, 0.999)
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == total == 170


def test_empty_group_kept_and_overlap_and_no_groups():
    class HGNetLike(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Sequential(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1))
            self.decoder = nn.Linear(1, 1)

    names = assign_param_groups(HGNetLike(), ATTO_GROUPS)
    assert names[1] == [] and len(names) == 4  # empty group kept: indices match the official optimizer
    opt = build_optimizer(HGNetLike(), ATTO_GROUPS, lr=1e-3)
    assert len(opt.param_groups) == 4 and opt.param_groups[1]["params"] == []
    # a parameter matching two patterns stays in the first one
    overlap = assign_param_groups(HGNetLike(), [{"params": "decoder"}, {"params": "weight"}])
    assert overlap[0] == ["decoder.weight", "decoder.bias"]
    assert "decoder.weight" not in overlap[1]
    # everything matched: no rest group
    assert len(assign_param_groups(HGNetLike(), [{"params": ".*"}])) == 1
    # no groups: one group with everything
    assert len(build_param_groups(HGNetLike(), None, 1e-3, 0.0)) == 1


def test_bad_group_spec():
    with pytest.raises(ConfigError, match="正则表达式"):
        assign_param_groups(Tiny(), [{"params": "(unclosed"}])
    with pytest.raises(ConfigError, match="params"):
        assign_param_groups(Tiny(), [{"lr": 0.1}])


# ---------------------------------------------------------------------------- logger
def test_jsonl_log_roundtrip(tmp_path):
    path = tmp_path / "训练 日志" / "log.jsonl"
    log = JsonlLogger(path)
    log.log({"epoch": 0, "train_loss": torch.tensor(2.5), "AP": 0.1, "note": "第一轮"})
    log.log({"epoch": 1, "train_loss": 1.5, "AP": 0.2})
    assert read_log(path) == [
        {"epoch": 0, "train_loss": 2.5, "AP": 0.1, "note": "第一轮"},
        {"epoch": 1, "train_loss": 1.5, "AP": 0.2},
    ]
    assert "第一轮" in path.read_text(encoding="utf-8")  # not \\u-escaped


def test_read_log_cut_line_and_errors(tmp_path, capsys):
    path = tmp_path / "log.jsonl"
    path.write_text('{"epoch": 0}\n{"epoch": 1, "tr', encoding="utf-8")
    assert read_log(path) == [{"epoch": 0}]
    assert "不完整" in capsys.readouterr().out
    path.write_text('{"epoch": 0}\nnot json\n{"epoch": 2}\n', encoding="utf-8")
    with pytest.raises(DEIMv2Error, match="第 2 行"):
        read_log(path)
    with pytest.raises(DEIMv2Error, match="找不到"):
        read_log(tmp_path / "missing.jsonl")


def test_smoothed_value_and_meter():
    v = SmoothedValue(window_size=2)
    for x in (1.0, 2.0, 6.0):
        v.update(x)
    assert (v.value, v.median, v.avg, v.global_avg) == (6.0, 4.0, 4.0, 3.0)
    v.update(4.0, n=3)  # batch of 3 with mean 4: global avg (1 + 2 + 6 + 12) / 6
    assert v.global_avg == pytest.approx(21 / 6)
    m = MetricMeter(window_size=2)
    m.update(loss=torch.tensor(3.0), lr=1e-3)
    m.update(loss=1.0, lr=1e-3)
    assert m.postfix(["loss", "missing"]) == {"loss": "2"}
    assert m.global_averages() == {"loss": 2.0, "lr": 1e-3}
    m.synchronize_between_processes()  # no-op without torch.distributed
    assert m["loss"].count == 2


def test_tensorboard_optional(tmp_path, capsys):
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        assert make_tensorboard_writer(tmp_path) is None
        assert "tensorboard" in capsys.readouterr().out
    else:
        w = make_tensorboard_writer(tmp_path)
        w.add_scalar("x", 1.0, 0)
        w.close()


def test_plot_training_curves(tmp_path):
    records = [
        {
            "epoch": e,
            "train_loss": 10.0 - e,
            "train_loss_mal": 1.0 / (e + 1),
            "train_loss_mal_aux_0": 1.0,
            "AP": 0.1 * e,
            "AP50": 0.2 * e,
        }
        for e in range(4)
    ]
    fig = plot_training_curves(records)
    ax_loss, ax_ap = fig.axes
    assert [ln.get_label() for ln in ax_loss.lines] == ["loss", "loss_mal"]  # aux terms left out
    assert [ln.get_label() for ln in ax_ap.lines] == ["AP", "AP50"]
    assert list(ax_ap.lines[1].get_ydata()) == pytest.approx([0.0, 0.2, 0.4, 0.6])
    # the official log.txt format, read from a file
    path = tmp_path / "log.txt"
    path.write_text(
        "\n".join(
            json.dumps({"epoch": e, "train_loss": 5.0 - e, "test_coco_eval_bbox": [0.3 + e / 10, 0.5] + [0.0] * 10})
            for e in range(3)
        )
        + "\n",
        encoding="utf-8",
    )
    fig = plot_training_curves(path)
    assert list(fig.axes[1].lines[0].get_ydata()) == pytest.approx([0.3, 0.4, 0.5])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    assert buf.getvalue()[:4] == b"\x89PNG"


# measured official AdamW group sizes (spec §2); Atto/Femto/Pico share their bbox heads, so their
# state_dict lists shared tensors twice and only N/S/M/L/X can be rebuilt from the key list
SPEC_GROUP_COUNTS = {
    "hgnetv2_n": [1_850_396, 0, 14_479, 1_735_544],
    "dinov3_s": [5_456_064, 30_144, 27_356, 4_266_272],
    "dinov3_m": [9_634_048, 40_192, 41_564, 8_641_944],
    "dinov3_l": [21_540_096, 61_056, 47_500, 10_902_560],
    "dinov3_x": [28_617_984, 79_488, 74_838, 22_439_424],
}


@pytest.mark.parametrize("name", sorted(SPEC_GROUP_COUNTS))
def test_group_counts_match_official(name):
    ref = Path(__file__).resolve().parent / "fixtures" / "official" / "state_dict" / f"{name.split('_')[1]}.json"
    cfg_path = Path(__file__).resolve().parents[1] / "deimv2" / "configs" / f"deimv2_{name}_coco.yaml"
    state = json.loads(ref.read_text(encoding="utf-8"))["state_dict"]
    buffers = re.compile(
        r"(running_mean|running_var|num_batches_tracked|anchors|valid_mask|"
        r"num_points_scale|periods|bias_mask)$|(^|\.)(up|reg_scale)$"
    )
    shapes = {k: s for k, s in state.items() if not buffers.search(k)}

    class FromKeys(nn.Module):
        def named_parameters(self, *args, **kwargs):
            for k, s in shapes.items():
                yield k, nn.Parameter(torch.empty(s, device="meta"))

    groups = read_yaml(cfg_path)["optimizer"]["params"]  # the variant file merged with its base files
    names = assign_param_groups(FromKeys(), groups)
    assert [sum(math.prod(shapes[n]) for n in g) for g in names] == SPEC_GROUP_COUNTS[name]
