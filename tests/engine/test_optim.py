"""Optimizer param groups (official regex semantics), checked against the official group sizes."""

import json
import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from deimv2.config.loader import read_yaml
from deimv2.engine.optim import assign_param_groups, build_optimizer, build_param_groups
from deimv2.errors import ConfigError

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
    ref = Path(__file__).resolve().parents[1] / "fixtures" / "official" / "state_dict" / f"{name.split('_')[1]}.json"
    cfg_path = Path(__file__).resolve().parents[2] / "deimv2" / "configs" / f"deimv2_{name}_coco.yaml"
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


def test_batched_adamw_equals_the_per_parameter_loop():
    """build_optimizer's batched (foreach) AdamW gives the per-parameter loop's weights bit for bit, over
    several steps with both groups' weight decay."""
    torch.manual_seed(0)
    a, b = Tiny(), Tiny()
    b.load_state_dict(a.state_dict())
    start = a.encoder.proj.weight.detach().clone()
    fast = build_optimizer(a, ATTO_GROUPS, lr=1e-3, weight_decay=1e-4)
    loop = torch.optim.AdamW(build_param_groups(b, ATTO_GROUPS, 1e-3, 1e-4), lr=1e-3, weight_decay=1e-4, foreach=False)
    assert fast.defaults["foreach"] is True
    for _step in range(5):
        grads = [torch.randn_like(p) for p in a.parameters() if p.requires_grad]
        for model, opt in ((a, fast), (b, loop)):
            for p, g in zip([p for p in model.parameters() if p.requires_grad], grads):
                p.grad = g.clone()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.encoder.proj.weight, start)  # the weights did move
