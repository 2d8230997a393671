"""Static checks of the tutorial notebooks (no kernel): structure, house style, no outputs, Colab cell.

Executing them is nbval's job (``pytest --nbval-lax --nbval-current-env notebooks/``).
"""
import ast
import re
from pathlib import Path

import nbformat
import pytest

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = {
    "00_environment.ipynb": "环境准备",
    "01_weights.ipynb": "预训练权重",
    "02_convert.ipynb": "数据集转换",
    "03_config.ipynb": "配置文件",
    "04_train.ipynb": "模型训练",
    "05_inference.ipynb": "推理预测",
    "06_evaluate.ipynb": "模型评估",
    "07_architecture.ipynb": "模型结构",
    "08_decoder.ipynb": "解码器",
    "09_loss.ipynb": "损失函数与匹配",
}
CJK = re.compile(r"[\u4e00-\u9fff]")
COLAB_URL = "https://colab.research.google.com/github/deimv2-zh/deimv2/blob/main/notebooks/{}"


def _load(name):
    path = NB_DIR / name
    nb = nbformat.read(path, as_version=4)
    return nb


def _tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def test_exactly_the_numbered_notebooks_00_to_09_exist():
    found = sorted(p.name for p in NB_DIR.glob("*.ipynb"))
    assert found == sorted(NOTEBOOKS), f"notebooks/ holds {found}"


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_valid_nbformat(name):
    nb = _load(name)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_committed_without_outputs(name):
    for i, cell in enumerate(_load(name).cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name} cell {i} has outputs"
            assert cell.execution_count is None, f"{name} cell {i} has an execution_count"


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_chinese_title_badge_and_learning_goals(name):
    first = _load(name).cells[0]
    assert first.cell_type == "markdown"
    title = first.source.splitlines()[0]
    assert title.startswith("# ") and NOTEBOOKS[name] in title and CJK.search(title)
    assert COLAB_URL.format(name) in first.source
    assert "## 本节你将学到" in first.source


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_ends_with_summary_and_exercises(name):
    cells = _load(name).cells
    assert cells[-2].cell_type == "markdown" and cells[-2].source.startswith("## 小结")
    assert cells[-1].cell_type == "markdown" and cells[-1].source.startswith("## 练习")
    assert re.search(r"^1\. ", cells[-1].source, re.M), "练习 should be a numbered list"


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_first_code_cell_is_colab_install_and_skipped(name):
    code = [c for c in _load(name).cells if c.cell_type == "code"]
    colab = code[0]
    assert "nbval-skip" in _tags(colab)
    assert '"google.colab" in sys.modules' in colab.source
    assert "pip" in colab.source and "install" in colab.source
    ast.parse(colab.source)  # plain Python: no "!pip" shell escapes


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_code_cells_parse_and_use_deimv2(name):
    code = [c for c in _load(name).cells if c.cell_type == "code"]
    for cell in code:
        lines = [ln for ln in cell.source.splitlines() if not ln.lstrip().startswith("%")]
        ast.parse("\n".join(lines))
    body = "\n".join(c.source for c in code[1:])
    assert "deimv2" in body
    assert "TODO" not in body


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_outputs_go_under_outputs_notebooks(name):
    body = "\n".join(c.source for c in _load(name).cells if c.cell_type == "code")
    for literal in re.findall(r"Path\(\"(\.\./outputs[^\"]*)\"\)", body):
        assert literal.startswith("../outputs/notebooks/"), literal


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_only_known_tags(name):
    for cell in _load(name).cells:
        assert set(_tags(cell)) <= {"nbval-skip", "raises-exception"}, _tags(cell)


def test_error_teaching_cell_is_tagged():
    cells = _load("02_convert.ipynb").cells
    tagged = [c for c in cells if "raises-exception" in _tags(c)]
    assert len(tagged) == 1 and "HungarianMatcher" in tagged[0].source


def test_conftest_enables_fast_mode():
    text = (NB_DIR / "conftest.py").read_text(encoding="utf-8")
    assert 'os.environ.setdefault("DEIMV2_FAST", "1")' in text
