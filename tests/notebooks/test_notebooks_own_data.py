"""Notebooks 02, 04, 05 and 06 on the learner's own dataset, run with papermill (marker ``slow_notebooks``).

A YOLO dataset with other class names and another number of classes than the demo is generated, passed as
``-p DATA …/data.yaml`` to 02 and 04; 05 and 06 get no DATA: they must take the dataset, the class names and
the checkpoint from the run that 04 wrote. Fast mode (``DEIMV2_FAST=1``) keeps the training to a few steps.

Run with ``pytest -m slow_notebooks tests/notebooks/test_notebooks_own_data.py`` (``.ci/run`` does; a few minutes).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import nbformat
import pytest
from helpers.tinydata import make_yolo_dataset

papermill = pytest.importorskip("papermill")  # in the dev and notebooks extras

ROOT = Path(__file__).resolve().parents[2]
NB_DIR = ROOT / "notebooks"
pytestmark = pytest.mark.slow_notebooks
MY_NAMES = ("螺丝", "螺母", "垫片")  # 3 classes; the demo has 4
DEMO_NAMES = ("猫", "咖啡杯", "硬币", "火箭")


def _outputs(path: Path) -> str:
    """All outputs of an executed notebook (text, reprs, Markdown, error values) as one string."""
    out = []
    for cell in nbformat.read(path, as_version=4).cells:
        for o in cell.get("outputs", []):
            assert o.output_type != "error", f"{path.name}: {o.get('ename')}: {o.get('evalue')}"
            data = o.get("data", {})
            out.append(o.get("text", "") + str(data.get("text/plain", "")) + str(data.get("text/markdown", "")))
    return "\n".join(out)


@pytest.fixture
def folder(monkeypatch):
    path = Path(tempfile.mkdtemp(prefix="deimv2_own_data_"))
    monkeypatch.setenv("DEIMV2_FAST", "1")  # the kernels inherit this environment
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the kernel imports this checkout's deimv2
    monkeypatch.delenv("DEIMV2_CKPTS", raising=False)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_02_04_05_06_on_a_generated_dataset(folder):
    data_yaml = make_yolo_dataset(folder / "我的 数据", names=MY_NAMES)
    runs = folder / "notebooks"
    runs.mkdir()
    texts = {}
    for name, params in (
        ("02_convert.ipynb", {"DATA": str(data_yaml)}),
        ("04_train.ipynb", {"DATA": str(data_yaml)}),
        ("05_inference.ipynb", {}),
        ("06_evaluate.ipynb", {}),
    ):
        out = runs / name
        papermill.execute_notebook(
            str(NB_DIR / name),
            str(out),
            parameters=params,
            cwd=str(runs),
            kernel_name="python3",
            progress_bar=False,
            execution_timeout=900,
        )
        texts[name] = _outputs(out)

    for name, text in texts.items():
        for demo in DEMO_NAMES:
            assert demo not in text, f"{name} shows the demo class {demo!r}"
    assert all(n in texts["02_convert.ipynb"] for n in MY_NAMES)
    assert "没有找到 04_train.ipynb 训练的模型" not in texts["05_inference.ipynb"] + texts["06_evaluate.ipynb"]

    # 06: the per-class table has exactly our classes
    per_class = json.loads((runs / "outputs" / "06_evaluate" / "eval.json").read_text(encoding="utf-8"))["per_class"]
    assert [row["name"] for row in per_class] == list(MY_NAMES)
    for n in MY_NAMES:
        assert f"  {n}：" in texts["06_evaluate.ipynb"]  # the printed per-class rows

    # 05: the detector carries our names, and what it drew and saved is labelled with them
    assert f"3 个类别：{list(MY_NAMES)}" in texts["05_inference.ipynb"]
    saved = json.loads((runs / "outputs" / "05_inference" / "predictions.json").read_text(encoding="utf-8"))
    assert saved and {row["category_name"] for row in saved} <= set(MY_NAMES)
    drawn = texts["05_inference.ipynb"].split("分数最高的 5 个框：", 1)[1].split("\n", 1)[0]
    assert any(n in drawn for n in MY_NAMES), drawn


def test_05_runs_under_plain_nbclient_without_output_widgets(folder):
    """Plain nbclient (as papermill and ``jupyter nbconvert --execute`` use it), short cell time-out.

    A display inside an ``Output`` widget (what ``interact`` does) makes nbclient send the widget's whole state,
    image included, back on the shell channel while it waits there for the cell's execute reply; the reply was
    then often read only when the cell time-out ran out. 05's slider cell therefore displays no Output widget.
    """
    from nbclient import NotebookClient

    nb = nbformat.read(NB_DIR / "05_inference.ipynb", as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    models = {s.get("model_name") for s in state.values()}
    assert "FloatSliderModel" in models and "OutputModel" not in models, models
    slider_cell = next(c for c in nb.cells if c.cell_type == "code" and "FloatSlider(" in c.source)
    assert any("image/png" in o.get("data", {}) for o in slider_cell.outputs)  # the picture is shown, not in a widget
