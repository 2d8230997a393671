"""Repository hygiene: no development-machine folder in any tracked file; every relative link in README and
docs/ points at something in the repository."""

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: the top-level folders of a development machine that no tracked file may name as an absolute path
MACHINE_DIRS = ("work", "tmp", "root", "home")
#: such a path where a path starts (not inside a URL, after ``~`` or inside a relative path)
MACHINE_PATH = re.compile(r"(?<![\w.\-/~])/(?:" + "|".join(MACHINE_DIRS) + r")/")


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False)
    if out.returncode != 0:  # not a git checkout (an unpacked sdist): every file under the root counts
        return [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts]
    return [f for f in out.stdout.decode().split("\0") if f]


def machine_paths(text: str) -> list[str]:
    """The lines of ``text`` that name a development machine's folder."""
    return [line.strip()[:120] for line in text.splitlines() if MACHINE_PATH.search(line)]


def test_the_pattern_finds_machine_paths_and_only_them():
    work, tmp, root, home = (f"/{d}/" for d in MACHINE_DIRS)
    found = machine_paths(  # built here so that this file itself names no machine folder
        f'"data": "{work}main/outputs/x.yaml"\nvenv at `{root}venv`\ncd {tmp}official\nls {home}me/\n'
        f"https://example.com{home}page\n~{home}x\nrelative{tmp}x\noutputs{work}y"  # not machine paths
    )
    assert len(found) == 4 and all("example.com" not in f for f in found)


def test_no_development_machine_paths_in_tracked_files():
    bad = {}
    for name in tracked_files():
        path = ROOT / name
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # pictures, weights: not text
            continue
        if hits := machine_paths(text):
            bad[name] = hits[:3]
    assert not bad, (
        f"这些文件里有开发机器的绝对路径（{'、'.join(f'/{d}/' for d in MACHINE_DIRS)}）：{bad}。"
        "请改成相对于仓库的路径，或写成通用的说明（例如“官方代码目录”）。"
    )


LINK = re.compile(r"\]\(([^)\s]+)\)")


def doc_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def relative_links(page: Path) -> list[str]:
    """The link targets of ``page`` that point into the repository (no scheme, no pure #anchor)."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # code blocks are not links
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: p.name)
def test_relative_links_resolve(page):
    links = relative_links(page)
    missing = [t for t in links if not (page.parent / unquote(t.split("#")[0])).exists()]
    assert not missing, f"{page.relative_to(ROOT)} 里这些相对链接指向不存在的文件：{missing}"


def test_link_check_sees_links():
    """The link test is not vacuous: README links to docs/ pages and the results folder."""
    links = relative_links(ROOT / "README.md")
    assert any(t.startswith("docs/") for t in links) and any("benchmarks/results" in t for t in links)
