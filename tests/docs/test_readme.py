"""README as a front door: its shape, its commands, its Python block (run here in fast mode), and the few facts
in README and docs/ that could drift from the code (what `deimv2 demo` runs, which extras exist, how to install)."""

import re
import shutil
from pathlib import Path

import pytest
import torch
from setuptools.config.pyprojecttoml import read_configuration
from test_readme_numbers import readme_demo_claim

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = {p.name: p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md"))}
PYPROJECT = read_configuration(ROOT / "pyproject.toml")


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_readme_is_short_and_its_first_screen_answers_the_four_questions():
    lines = README.splitlines()
    assert len(lines) <= 200
    first = "\n".join(lines[:30])
    assert "非官方" in first and "github.com/Intellindust-AI-Lab/DEIMv2" in first  # not the official project
    assert "pip install" in first  # how to install
    assert readme_demo_claim() in first  # what the demo gives
    assert "deimv2 train -c atto --data" in first  # how to train on one's own data


def test_quick_start_is_one_block_of_two_commands_and_ci_runs_the_second():
    qs = section(README, "快速开始")
    (block,) = blocks(qs, "bash")
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert len(commands) == 2
    assert commands[0].endswith("&& deimv2 demo") and commands[0].startswith("pip install -e")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[1] in [line.strip() for line in ci.splitlines()]


def test_install_lines_use_the_clone_or_the_repository_url_and_real_extras():
    """The package is not on PyPI: `pip install -e .[…]` in a clone, or `deimv2[…] @ git+<[project.urls]>`."""
    url = PYPROJECT["project"]["urls"]["Repository"]
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    pages = {"README.md": README, **DOCS, "ckpts/README.md": (ROOT / "ckpts" / "README.md").read_text("utf-8")}
    seen = 0
    for name, text in pages.items():
        for m in re.finditer(
            r"pip install[^\n`]*?(-e\s+\"?\.(?:\[([\w,]+)\])?|\"?deimv2(?:\[([\w,]+)\])?[^\n`]*)", text
        ):
            seen += 1
            line, used = m.group(0), (m.group(2) or m.group(3) or "")
            if "deimv2" in m.group(1):
                assert f"@ git+{url}" in line, f"{name}：{line}（本包没有发布到 PyPI）"
            assert set(filter(None, used.split(","))) <= extras, f"{name}：{line} 用了 pyproject.toml 里没有的 extra"
            assert "export" not in used, f"{name}：onnx/onnxruntime/openvino 是核心依赖，不需要 [export]"
    assert seen >= 3


def test_core_runtimes_are_core_dependencies():
    """README/docs say ONNX export and the CPU runtimes come with the package."""
    deps = " ".join(PYPROJECT["project"]["dependencies"])
    assert all(name in deps for name in ("onnx>=", "onnxruntime", "openvino"))


def test_what_the_demo_runs_is_what_the_docs_say():
    from deimv2.tutorial import demo

    assert demo.DEMO_RECIPE == "small"
    assert demo.demo_overrides(256, 8, recipe="small")["HGNetv2.pretrained"] is False
    assert (
        "--recipe small -u HGNetv2.pretrained=false   # 完全不用预训练权重（deimv2 demo 就是这样）"
        in DOCS["training.md"]
    )
    for name, text in {"README.md": README, **DOCS}.items():
        assert not re.search(r"deimv2 demo[^。\n]*(proportional|按比例)", text), name


#: words of our own history, not of the user's work
INTERNAL = ("第四轮", "上一轮", "本轮", "这台", "本机", "seed 的", "seed）", "种子命令", "trial `")
TRIAL_ID = re.compile(r"\b[a-z0-9]+(?:_[a-z0-9]+)*_e\d+\b")


@pytest.mark.parametrize("name", ["README.md", *DOCS])
def test_no_internal_words(name):
    text = README if name == "README.md" else DOCS[name]
    assert not [w for w in INTERNAL if w in text]
    if name != "benchmarks.md":  # benchmarks.md names the results files and the commands that rerun them
        assert not TRIAL_ID.findall(text)


# ---------------------------------------------------------------- README's Python block, in fast mode
def _my_dataset(root: Path) -> None:
    """`我的数据集/` as a user has it: YOLO format (a few bundled demo images), data.yaml, valid/images/0001.jpg."""
    from deimv2.data.demo import demo_dataset_dir

    src = demo_dataset_dir()
    for split, n in (("train", 8), ("valid", 4)):
        for i, img in enumerate(sorted((src / split / "images").glob("*.jpg"))[:n]):
            stem = f"{i + 1:04d}"
            (root / split / "images").mkdir(parents=True, exist_ok=True)
            (root / split / "labels").mkdir(parents=True, exist_ok=True)
            shutil.copy(img, root / split / "images" / f"{stem}.jpg")
            shutil.copy(src / split / "labels" / f"{img.stem}.txt", root / split / "labels" / f"{stem}.txt")
    shutil.copy(src / "data.yaml", root / "data.yaml")


def test_readme_python_block_runs(tmp_path, monkeypatch):
    """The block as written, in an empty folder with `我的数据集/`; fast mode: the one `epochs=40` becomes one short
    epoch at a small size (the only change), and the HGNetv2 file the first training downloads is made here."""
    from deimv2.models.hgnetv2 import HGNetv2

    (code,) = blocks(section(README, "在自己的数据上训练"), "python")
    assert len(code.strip().splitlines()) <= 8
    assert code.count("epochs=40") == 1
    fast = code.replace(
        "epochs=40", "epochs=1, max_iters_per_epoch=1, eval_spatial_size=[160, 160], num_workers=0, progress=False"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEIMV2_FAST", "1")
    _my_dataset(tmp_path / "我的数据集")
    (tmp_path / "ckpts").mkdir()
    torch.save(HGNetv2("B0", use_lab=True).state_dict(), tmp_path / "ckpts" / "PPHGNetV2_B0_stage1.pth")
    namespace: dict = {}
    exec(compile(fast, "README.md", "exec"), namespace)
    assert (tmp_path / "结果.png").is_file()
    assert Path(namespace["result"]["output_dir"], "best.pth").is_file()
    assert set(namespace["pred"].names) <= {"猫", "咖啡杯", "硬币", "火箭"}
