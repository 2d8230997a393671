"""Fast checks (no browser) of the browser test's own logic: reading a saved notebook and judging widget outputs."""

import importlib.util
import json
from pathlib import Path

from test_notebooks_in_browser import (
    UNRENDERED,
    WIDGET_MIME,
    _saved_problems,
    _widget_problems,
)

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "browser_test.py"


def _code(outputs, count=1, source="x = 1"):
    return {"cell_type": "code", "execution_count": count, "metadata": {}, "source": [source], "outputs": outputs}


def _widget_output(model_id):
    return {
        "output_type": "display_data",
        "metadata": {},
        "data": {WIDGET_MIME: {"model_id": model_id, "version_major": 2}, "text/plain": "VBox(children=())"},
    }


def test_saved_problems_errors_unexecuted_widgets_and_state(tmp_path):
    nb = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# 标题"]},
            _code([_widget_output("a"), _widget_output("b")]),
            _code([{"output_type": "error", "ename": "TraitError", "evalue": "Invalid selection", "traceback": []}]),
            _code([], count=None),
            _code([], count=None, source="   "),  # an empty cell has nothing to run
        ],
        "metadata": {"widgets": {"application/vnd.jupyter.widget-state+json": {"state": {"a": {}}}}},
    }
    path = tmp_path / "笔记 本.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    problems, ids, live = _saved_problems(path)
    assert problems == ["cell 2: TraitError: Invalid selection", "cell 3: not executed"]
    assert ids == ["a", "b"] and live == {"a"}


def test_widget_problems():
    shown = [
        {"cell": 1, "model_id": "a", "shown": "widget", "text": ""},
        {"cell": 1, "model_id": "b", "shown": "empty", "text": ""},
    ]
    assert _widget_problems(shown, ["a", "b"], {"a"}) == []
    # a live widget drawn as its text fallback, a closed one that left text behind, a widget missing on the page
    bad = [
        {"cell": 1, "model_id": "a", "shown": "text", "text": "VBox(children=(...))"},
        {"cell": 2, "model_id": "b", "shown": "text", "text": "Loading widget..."},
    ]
    problems = _widget_problems(bad, ["a", "b", "c"], {"a"})
    assert len(problems) == 3
    assert "shown as 'text', expected 'widget'" in problems[1] and "expected 'empty'" in problems[2]


def test_unrendered_pattern():
    for text in (
        "Loading widget...",
        "Error displaying widget: model not found",
        "VBox(children=(Dropdown(description='变体'),))",
        "interactive(children=(FloatSlider(value=0.3",
        "IntSlider(value=2, description='轮数')",
    ):
        assert UNRENDERED.search(text), text
    for text in ("训练完成。最佳 AP=0.0000", "BBox(x=1)", "VBoxes are boxes", "bbox [72.0, 40.0]"):
        assert not UNRENDERED.search(text), text


def test_benchmark_summary_line():
    spec = importlib.util.spec_from_file_location("bench_browser_test", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = "....F\nFAILED tests/x.py::y - AssertionError\n=== 1 failed, 8 passed, 470 deselected in 412.3s ===\n"
    assert bench.summary_line(out) == "1 failed, 8 passed, 470 deselected in 412.3s"
    assert bench.summary_line("") == ""
    info = bench.machine_info(chromium="/nonexistent/chromium")
    assert info["chromium"] is None and info["cpu_count"] >= 1
