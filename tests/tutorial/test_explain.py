"""deimv2.tutorial.explain: hooks and extractors used by notebooks 07–09."""

import subprocess
import sys

import matplotlib
import pytest
import torch

from deimv2.models.build import build_model
from deimv2.models.decoder_layers import deformable_sample
from deimv2.tutorial.explain import (
    capture,
    decoder_layers,
    draw_sampling_points,
    edge_distributions,
    feature_image,
    plot_edge_distributions,
    plot_stage_diagram,
    query_selection,
    sampling_points,
    stage_table,
)

matplotlib.use("Agg")
SIZE = 160


@pytest.fixture(scope="module")
def atto():
    torch.manual_seed(0)
    model = build_model("atto", num_classes=3, eval_spatial_size=[SIZE, SIZE]).eval()
    images = torch.rand(2, 3, SIZE, SIZE)
    return model, images


def _no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_capture_records_and_removes_hooks(atto):
    model, images = atto
    with torch.no_grad(), capture(model, ["backbone", "decoder.dec_bbox_head.0"], inputs=True) as rec:
        out = model(images)
    assert _no_hooks(model)
    (bb,) = rec["backbone"]
    assert isinstance(bb.output, list) and bb.inputs[0].shape == images.shape and bb.ms >= 0
    # Atto shares one box head across its 3 layers: one record per call
    assert len(rec["decoder.dec_bbox_head.0"]) == model.decoder.num_layers
    assert out["pred_boxes"].shape == (2, model.decoder.num_queries, 4)


def test_capture_removes_hooks_after_error_and_rejects_unknown_names(atto):
    model, images = atto
    with pytest.raises(RuntimeError), capture(model, ["encoder"]):
        model(images[:, :2])  # wrong channel count
    assert _no_hooks(model)
    with pytest.raises(KeyError, match="没有这些子模块"), capture(model, ["no.such.module"]):
        pass


def test_stage_table_shapes_params_and_flops(atto):
    model, images = atto
    rows = {r["stage"]: r for r in stage_table(model, images[:1], runs=2)}
    assert rows["backbone"]["output"] == [(1, 256, SIZE // 16, SIZE // 16)]  # Atto: one stride-16 map
    assert rows["encoder"]["output"] == [(1, 64, SIZE // 16, SIZE // 16), (1, 64, SIZE // 32, SIZE // 32)]
    assert rows["backbone"]["params"] == sum(p.numel() for p in model.backbone.parameters())
    parts = sum(rows[n]["flops"] for n in ("backbone", "encoder", "decoder"))
    assert rows["backbone"]["flops"] > rows["encoder"]["flops"] > 0 and parts > 0
    assert rows["decoder"]["output"]["pred_logits"] == (1, model.decoder.num_queries, 3)
    assert _no_hooks(model)


def test_decoder_layers_last_layer_equals_eval_output_and_modes_restored(atto):
    model, images = atto
    with torch.no_grad():
        ref = model(images)
    d = decoder_layers(model, images)
    assert len(d["layers"]) == model.decoder.num_layers
    torch.testing.assert_close(d["layers"][-1]["boxes"], ref["pred_boxes"])
    torch.testing.assert_close(d["layers"][-1]["logits"], ref["pred_logits"])
    assert not any(m.training for m in model.modules())
    assert d["project"].shape == (model.decoder.reg_max + 1,)
    probs = edge_distributions(d["layers"][0]["corners"], model.decoder.reg_max)
    assert probs.shape == (2, model.decoder.num_queries, 4, model.decoder.reg_max + 1)
    torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]))


def test_decoder_layers_refuses_deployed_model():
    model = build_model("atto", num_classes=3, eval_spatial_size=[SIZE, SIZE]).deploy()
    with pytest.raises(ValueError, match="部署形态"):
        decoder_layers(model, torch.rand(1, 3, SIZE, SIZE))


def test_sampling_points_reproduce_the_attention_output(atto):
    model, images = atto
    layers = sampling_points(model, images)
    assert len(layers) == model.decoder.num_layers
    names = [f"decoder.decoder.layers.{i}.cross_attn" for i in range(model.decoder.num_layers)]
    with torch.no_grad(), capture(model, names, inputs=True) as rec:
        model(images)
    for layer, name in zip(layers, names):
        (r,) = rec[name]
        values, shapes = r.inputs[2], r.inputs[3]
        again = deformable_sample(values, shapes, layer["locations"], layer["weights"], layer["num_points"])
        torch.testing.assert_close(again, r.output)
        torch.testing.assert_close(layer["weights"].sum(-1), torch.ones(layer["weights"].shape[:-1]))
        assert layer["level"].tolist() == [0] * 4 + [1] * 2  # Atto: num_points [4, 2]


def test_query_selection_matches_initial_query_boxes(atto):
    model, images = atto
    q = query_selection(model, images)
    k = model.decoder.num_queries
    assert q["topk"].shape == (2, k) and q["xy"].shape == (2, k, 2)
    assert [tuple(m.shape[1:]) for m in q["maps"]] == [tuple(s) for s in q["spatial_shapes"]]
    # a fresh model's proposal head outputs 0: the proposals sit exactly on the chosen anchors' centres
    enc = decoder_layers(model, images)["enc"]["boxes"]
    torch.testing.assert_close(enc[..., :2], q["xy"], atol=1e-5, rtol=0)


def test_plots_draw_something(atto):
    import matplotlib.pyplot as plt
    import numpy as np

    model, images = atto
    layer = sampling_points(model, images)[0]
    fig, axes = plt.subplots(1, 6, figsize=(12, 2))
    img = (images[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    draw_sampling_points(axes[0], img, layer, query=0)
    assert len(axes[0].collections) == 2 and len(axes[0].patches) == 1  # two levels, one reference box
    d = decoder_layers(model, images)
    probs = edge_distributions(d["layers"][-1]["corners"][0, 0], model.decoder.reg_max)
    plot_edge_distributions(axes[1:5], probs, d["project"])
    assert len(axes[1].patches) == model.decoder.reg_max + 1
    plot_stage_diagram(stage_table(model, images[:1], flops=False), ax=axes[5])
    assert len(axes[5].texts) >= 5
    plt.close(fig)


def test_models_do_not_import_explain():
    code = (
        "import sys, deimv2.models, deimv2.loss, deimv2.infer.detector; print('deimv2.tutorial.explain' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_feature_image_is_the_principal_components():
    torch.manual_seed(0)
    pattern = torch.linspace(-1, 1, 12).reshape(3, 4)
    feat = torch.stack([pattern * k for k in (1.0, 2.0, -3.0)] + [torch.zeros(3, 4)])  # rank 1
    img = feature_image(feat)
    assert img.shape == (3, 4, 3) and img.min() >= 0 and img.max() <= 1
    first = img[..., 0].flatten()
    # the first component follows the pattern (up to sign), from 0 to 1
    assert torch.allclose(first, (pattern.flatten() + 1) / 2, atol=1e-5) or torch.allclose(
        first, (1 - pattern.flatten()) / 2, atol=1e-5
    )


def test_public_model_and_loss_code_names_the_notebook_section_that_explains_it():
    """d2l style: every public class/function in deimv2/models and deimv2/loss says where it is explained,
    and that notebook has the numbered section."""
    import ast
    import re
    from pathlib import Path

    import nbformat

    root = Path(__file__).resolve().parents[2]
    ref = re.compile(r"Explained in (notebooks/(\d\d_\w+\.ipynb)) §(\d+)")
    headings = {}
    missing = []
    for path in sorted((root / "deimv2").glob("[ml]o*/*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if not isinstance(node, (ast.ClassDef, ast.FunctionDef)) or node.name.startswith("_"):
                continue
            m = ref.search(ast.get_docstring(node) or "")
            if not m:
                missing.append(f"{path.name}:{node.name}")
                continue
            nb = m.group(2)
            if nb not in headings:
                cells = nbformat.read(root / m.group(1), as_version=4).cells
                headings[nb] = {
                    h for c in cells if c.cell_type == "markdown" for h in re.findall(r"^## (\d+)\. ", c.source, re.M)
                }
            assert m.group(3) in headings[nb], f"{path.name}:{node.name} cites {nb} §{m.group(3)}, which does not exist"
    assert not missing, f"no 'Explained in notebooks/… §N' in: {missing}"
