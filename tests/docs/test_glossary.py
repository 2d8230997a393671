"""notebooks/glossary.md: one word per term; every notebook keeps to it and speaks no internal language."""

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(p.name for p in NB_DIR.glob("[0-9][0-9]_*.ipynb"))
#: words about how the project was made, not about the learner's work (DEVELOPERS.md)
INTERNAL = re.compile(r"这台|第[一二三四五六七八九十]轮的|\bseed 的|\bround \d")


def _glossary() -> list[tuple[str, list[str]]]:
    rows = []
    for line in (NB_DIR / "glossary.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("术语", "---"):
            rows.append((cells[0], [v for v in re.split(r"[、,]", cells[3]) if v.strip()]))
    return rows


def _text(name: str, kinds=("markdown", "code")) -> str:
    return "\n".join(c.source for c in nbformat.read(NB_DIR / name, as_version=4).cells if c.cell_type in kinds)


def test_glossary_lists_terms_with_their_wrong_spellings():
    rows = _glossary()
    assert len(rows) >= 15
    assert all(variants for _, variants in rows)
    assert len({t for t, _ in rows}) == len(rows)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_each_term_is_written_one_way(name):
    text = _text(name)
    for term, variants in _glossary():
        for wrong in variants:
            assert wrong not in text, f"{name}: write {term!r}, not {wrong!r} (notebooks/glossary.md)"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_no_internal_language(name):
    found = INTERNAL.findall(_text(name))
    assert not found, f"{name}: {found}"
