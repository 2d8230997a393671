"""Static checks of the tutorial notebooks (no kernel): structure, house style, no outputs, Colab cell.

Executing them is nbval's job (``pytest --nbval-lax --nbval-current-env notebooks/``).
"""

import ast
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NB_DIR = ROOT / "notebooks"
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
    "10_applications.ipynb": "应用",
}
#: written by another team: numbered 07-09, checked for structure when present
LATER = re.compile(r"0[7-9]_[a-z0-9_]+\.ipynb")
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
    assert set(NOTEBOOKS) <= set(found), f"notebooks/ holds {found}"
    assert all(name in NOTEBOOKS or LATER.fullmatch(name) for name in found), found


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
    assert re.search(r"^1\. ", cells[-1].source, re.MULTILINE), "练习 should be a numbered list"


def _repo_url():
    """``Repository`` of ``[project.urls]`` in pyproject.toml (tomllib is 3.11+, we support 3.10)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    urls = text.split("[project.urls]", 1)[1].split("\n[", 1)[0]
    return re.search(r'^Repository = "([^"]+)"', urls, re.MULTILINE).group(1)


#: notebooks whose first code cell is the papermill ``parameters`` cell (DATA, WORKSPACE …)
PARAMETERIZED = {"02_convert.ipynb", "04_train.ipynb", "05_inference.ipynb", "06_evaluate.ipynb"}


def _setup_cell(name):
    """The Colab-install + workspace cell: the first code cell, or the one after the parameters cell."""
    code = [c for c in _load(name).cells if c.cell_type == "code"]
    return code[1] if name in PARAMETERIZED else code[0]


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_setup_cell_is_colab_install_from_project_url_and_workspace(name):
    colab = _setup_cell(name).source
    ast.parse(colab)  # plain Python: no "!pip" shell escapes
    assert 'if "google.colab" in sys.modules:' in colab  # a no-op elsewhere, so it runs (and is tested) everywhere
    urls = re.findall(r'REPO_URL = "([^"]+)"', colab)
    assert urls == [_repo_url()], f"{name}: the install cell must use [project.urls] Repository of pyproject.toml"
    assert 'f"deimv2 @ git+{REPO_URL}.git"' in colab  # run-time needs only: no extras
    for dev_only in ("jupyterlab", "nbval", "ipywidgets", "-e", "git clone", "chdir"):
        assert dev_only not in colab, f"{name}: the Colab cell installs only run-time needs ({dev_only!r})"
    lines = [ln for ln in colab.splitlines() if ln.strip()]
    assert len(lines) <= 8, f"{name}: the install + workspace cell is at most 8 lines"
    if name != "00_environment.ipynb":  # 00 writes nothing
        assert "WORKSPACE = workspace(" in colab and "from deimv2.tutorial.notebook import workspace" in colab


@pytest.mark.parametrize("name", sorted(PARAMETERIZED))
def test_one_parameters_cell_first_with_data_and_workspace(name):
    code = [c for c in _load(name).cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in _tags(c)]
    assert tagged == [code[0]], f"{name}: exactly one parameters cell, the first code cell"
    tree = ast.parse(code[0].source)
    assigned = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets}
    assert all(isinstance(node, ast.Assign) for node in tree.body), "plain assignments only (papermill overrides them)"
    assert {"DATA", "WORKSPACE", "USE_GOOGLE_DRIVE"} <= assigned
    assert 'DATA = "demo"' in code[0].source  # the default is the bundled demo
    extra = {"04_train.ipynb": {"VARIANT", "EPOCHS", "TUNE"}, "05_inference.ipynb": {"VARIANT", "MY_IMAGES"}}
    assert extra.get(name, set()) <= assigned


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_colab_badge_points_at_project_repo(name):
    owner_repo = _repo_url().removeprefix("https://github.com/")
    assert f"colab.research.google.com/github/{owner_repo}/blob/main/notebooks/{name}" in _load(name).cells[0].source


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
def test_outputs_go_under_one_workspace(name):
    code = [c.source for c in _load(name).cells if c.cell_type == "code"]
    for src in code:
        assert "../" not in src and "..\\" not in src, f"{name}: no paths outside the notebook's folder"
    body = "\n".join(code)
    if name != "00_environment.ipynb":  # 00 writes nothing
        assert body.count("WORKSPACE = workspace(") == 1, name
        for literal in re.findall(r"Path\(\"([^\"]*)\"\)", body):
            raise AssertionError(f"{name}: path {literal!r} outside WORKSPACE")


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_no_cell_is_skipped_or_meant_to_raise(name):
    """Colab's "Run all" ignores tags: every cell must run; errors meant to be seen are caught and printed.
    The only tag is papermill's ``parameters``."""
    for cell in _load(name).cells:
        assert set(_tags(cell)) <= {"parameters"}, _tags(cell)


def test_error_teaching_cell_catches_and_prints():
    cells = [c for c in _load("02_convert.ipynb").cells if "HungarianMatcher(" in c.source]
    assert len(cells) == 1
    tree = ast.parse(cells[0].source)
    handlers = [h for node in ast.walk(tree) if isinstance(node, ast.Try) for h in node.handlers]
    assert [ast.unparse(h.type) for h in handlers] == ["IndexError"]


@pytest.mark.parametrize("name", ["05_inference.ipynb", "06_evaluate.ipynb"])
def test_model_comes_from_the_run_of_04_through_the_shared_fallback(name):
    body = "\n".join(c.source for c in _load(name).cells if c.cell_type == "code")
    assert body.count("trained_run_or_fallback(WORKSPACE, DATA, VARIANT)") == 1
    for demo_only in ("prepare_demo_coco", "latest_run(", '"valid"'):
        assert demo_only not in body, f"{name}: dataset and model come from the run 04 wrote ({demo_only})"


def test_no_notebook_reads_clone_only_files_or_deep_trains():
    for name in NOTEBOOKS:
        body = "\n".join(c.source for c in _load(name).cells if c.cell_type == "code")
        assert "benchmarks" not in body and "importlib" not in body, name
        assert "deimv2.engine.api import train" not in body, f"{name}: use deimv2.train"


def test_train_short_path_is_public_api_and_short():
    """04 opens with the path a learner copies: <= 8 code cells, about 60 lines, public names only."""
    cells = _load("04_train.ipynb").cells
    first_deep = next(i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith("## 深入"))
    code = [c.source for c in cells[:first_deep] if c.cell_type == "code"]
    assert len(code) <= 8
    assert sum(1 for src in code for ln in src.splitlines() if ln.strip()) <= 65
    body = "\n".join(code)
    assert "deimv2.train(" in body and "tune=TUNE" in body and "epochs=EPOCHS" in body
    assert "deimv2.evaluate(" in body and "deimv2.Detector" in body and "plot_training_curves" in body
    imports = re.findall(r"^(?:from|import) (\S+)", body, re.MULTILINE)
    assert set(imports) <= {"subprocess", "sys", "pathlib", "deimv2", "deimv2.tutorial.notebook", "IPython.display"}, (
        imports
    )


def test_conftest_enables_fast_mode():
    text = (NB_DIR / "conftest.py").read_text(encoding="utf-8")
    assert 'os.environ.setdefault("DEIMV2_FAST", "1")' in text
