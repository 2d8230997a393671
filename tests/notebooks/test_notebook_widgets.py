"""Every widget cell of the notebooks, built without a kernel under the fast and the full demo schedule.

A widget whose default is not among its options raises ``TraitError`` when it is built (this is how 04 used
to break whenever fast mode was off), so building the cells under both schedules is the test; the checks
below also follow every variant in 03's panel and keep the widget code to what ipywidgets 7.7 (Colab) has.
"""

import ast
import re
from pathlib import Path

import ipywidgets as widgets
import nbformat

from deimv2.config.loader import VARIANTS

NB_DIR = Path(__file__).resolve().parents[2] / "notebooks"
#: widget classes and helpers that exist, with the arguments used here, in ipywidgets 7.7 as well as 8
IPYWIDGETS_7 = {
    "Dropdown",
    "IntSlider",
    "FloatSlider",
    "FloatLogSlider",
    "Checkbox",
    "Text",
    "VBox",
    "HBox",
    "Output",
    "Layout",
    "interact",
}


def _widget_cells(name):
    return [
        c.source
        for c in nbformat.read(NB_DIR / name, as_version=4).cells
        if c.cell_type == "code" and re.search(r"\bwidgets\.|from ipywidgets import", c.source)
    ]


def _build(source, namespace):
    """Run a widget cell in ``namespace`` (what the earlier cells defined); return the widgets it made."""
    namespace.setdefault("__name__", "__widget_test__")
    exec(compile(source, "<widget cell>", "exec"), namespace)  # noqa: S102 - our own notebook cell
    return {k: v for k, v in namespace.items() if isinstance(v, widgets.Widget)}


def _assert_defaults_in_options(built):
    assert built
    for name, w in built.items():
        if isinstance(w, widgets.Dropdown):
            assert w.value in list(w.options), name
        if isinstance(w, (widgets.IntSlider, widgets.FloatSlider)):
            assert w.min <= w.value <= w.max, name


def test_train_has_no_second_panel():
    """04 trains with the config that 03's panel saved; it builds no panel of its own."""
    assert _widget_cells("04_train.ipynb") == []


def test_config_panel_follows_every_variant(tmp_path):
    (cell,) = _widget_cells("03_config.ipynb")
    ns = {"WORKSPACE": tmp_path}
    built = _build(cell, ns)
    _assert_defaults_in_options(built)
    official = ns["official"]
    for variant in VARIANTS:
        built["w_variant"].value = variant  # the observer copies the official values into the other widgets
        cfg = official[variant]
        assert built["w_size"].value == cfg.eval_spatial_size[0] and built["w_batch"].value == cfg.data.batch_size
        assert built["w_epochs"].value == cfg.schedule.epochs
    assert built["w_lr_scale"].value == 1.0  # a factor on every LR: the backbone-to-rest ratio stays


def test_widget_code_stays_within_ipywidgets_7():
    used = set()
    for path in sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb")):
        for source in _widget_cells(path.name):
            lines = "\n".join(ln for ln in source.splitlines() if not ln.lstrip().startswith("%"))
            for node in ast.walk(ast.parse(lines)):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "widgets":
                    used.add(node.attr)
                if isinstance(node, ast.ImportFrom) and node.module == "ipywidgets":
                    used.update(alias.name for alias in node.names)
    assert used and used <= IPYWIDGETS_7, used - IPYWIDGETS_7
