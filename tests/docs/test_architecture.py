"""Import architecture: the import-linter contracts of pyproject.toml hold, and no import cycle exists.

The contracts (``[tool.importlinter]``) and what they mean are described in docs/architecture.md; ``.ci/run``
runs the same contracts with ``lint-imports``.
"""

import importlib
import re
from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports
from setuptools.config.pyprojecttoml import read_configuration

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "deimv2"
CONTRACTS = read_configuration(ROOT / "pyproject.toml")["tool"]["importlinter"]["contracts"]


@pytest.mark.parametrize("contract", [c["id"] for c in CONTRACTS])
def test_import_contract_kept(contract, capsys):
    code = lint_imports(
        config_filename=str(ROOT / "pyproject.toml"), limit_to_contracts=(contract,), no_cache=True, no_logo=True
    )
    out = capsys.readouterr().out
    assert code == 0, out


def test_contracts_cover_the_stated_rules():
    by_id = {c["id"]: c for c in CONTRACTS}
    layers = [re.sub(r"[()]", "", layer) for layer in by_id["layers"]["layers"]]
    order = {name: i for i, layer in enumerate(layers) for name in re.split(r"\s*[|:]\s*", layer)}
    # models <- loss <- engine <- infer <- cli: a lower layer never imports an upper one
    chain = ["deimv2.cli", "deimv2.infer", "deimv2.engine", "deimv2.loss", "deimv2.models", "deimv2.config"]
    assert [order[m] for m in chain] == sorted(order[m] for m in chain)
    assert order["deimv2.weights"] < order["deimv2.loss"] and order["deimv2.data"] < order["deimv2.loss"]
    assert "torch" in by_id["config-plain-data"]["forbidden_modules"]
    assert by_id["no-cycles"]["type"] == "acyclic_siblings"


def test_every_module_is_in_a_layer():
    """The package root holds only __init__, __main__, cli and errors beside the subpackages, and every module
    falls under one line of the layers contract (so nothing escapes the import checks)."""
    pkg = ROOT / "deimv2"
    root_modules = sorted(p.name for p in pkg.glob("*.py"))
    assert root_modules == ["__init__.py", "__main__.py", "cli.py", "errors.py"]
    layered = {
        name.strip()
        for layer in next(c for c in CONTRACTS if c["id"] == "layers")["layers"]
        for name in layer.split("|")
    }
    subpackages = sorted(p.parent.name for p in pkg.glob("*/__init__.py"))
    assert subpackages, "no subpackage found"
    for sub in subpackages:
        assert f"deimv2.{sub}" in layered, f"deimv2.{sub} is in no layer of pyproject.toml"
    assert {"deimv2.cli", "deimv2.errors"} <= layered


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_cycle_finder_finds_a_cycle():
    g = grimp.ImportGraph()
    for a, b in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")]:
        g.add_import(importer=a, imported=b)
    assert _cycles(g) == [["p.a", "p.b", "p.c"]]


def test_no_import_cycle_between_any_modules():
    """Stricter than the sibling contract: no cycle at module level, also inside one package, lazy imports included."""
    graph = grimp.build_graph("deimv2", cache_dir=None, exclude_type_checking_imports=True)
    assert _cycles(graph) == []


def test_architecture_doc_names_every_contract():
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for c in CONTRACTS:
        assert f"`{c['id']}`" in doc, f"docs/architecture.md should explain contract {c['id']}"


def test_architecture_doc_names_only_real_files_and_modules():
    """Every `deimv2/...` path and `deimv2.x` module or name the doc points to exists (the doc stays true after moves)."""
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    paths = set(re.findall(r"`(deimv2/[\w/]+\.(?:py|yaml))`", doc))
    names = set(re.findall(r"`(deimv2(?:\.\w+)+)", doc))
    assert paths and names
    missing = [p for p in paths if not (ROOT / p).is_file()]
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:
            module, _, attr = name.rpartition(".")
            if not hasattr(importlib.import_module(module), attr):
                missing.append(name)
    assert missing == []


def test_tests_mirror_the_package():
    """tests/<package>/ for every subpackage with tests, plus cli/, docs/, bench/, notebooks/, browser/ (docs/architecture.md);
    no test file at the top of tests/, and the shared helpers are a package."""
    tests = ROOT / "tests"
    assert sorted(p.name for p in tests.glob("test_*.py")) == []
    subpackages = {p.parent.name for p in (ROOT / "deimv2").glob("*/__init__.py")}
    extra = {"cli", "docs", "bench", "notebooks", "browser", "helpers", "fixtures", "__pycache__"}
    dirs = {p.name for p in tests.iterdir() if p.is_dir()}
    assert dirs - subpackages - extra == set()
    assert (tests / "helpers" / "__init__.py").is_file()
    for sub in sorted(subpackages):
        assert list((tests / sub).glob("test_*.py")), f"deimv2.{sub} has no tests/{sub}/"
