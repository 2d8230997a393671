"""The ``Example:`` sections of the public API's docstrings run, and print what they show (doctest).

Each Example is self-contained (it imports what it uses; it gets no module globals), offline and small: random
weights or the bundled demo dataset, tiny image sizes, temporary folders (here under pytest's ``tmp_path``).
A new documented object is one more line in :data:`DOCUMENTED`.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import tempfile

import pytest
import torch

#: the public objects whose docstring Examples run; a class includes its methods' Examples
DOCUMENTED = [
    "deimv2.Detector",
    "deimv2.load_config",
    "deimv2.yolo_to_coco",
    "deimv2.check_dataset",
    "deimv2.export_onnx",
    "deimv2.train",
    "deimv2.evaluate",
]
#: methods whose own docstring must have an Example (besides the objects above)
DOCUMENTED_METHODS = ["deimv2.Detector.from_checkpoint", "deimv2.Detector.predict"]
#: ``...`` stands for a changing part of an output (a temporary folder); line breaks in an output do not matter
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _resolve(dotted: str):
    module, _, attr = dotted.partition(".")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _examples(dotted: str) -> list[doctest.DocTest]:
    """The docstring tests of ``dotted`` (and, for a class, of its methods) that have examples, with empty globals."""
    tests = doctest.DocTestFinder(exclude_empty=True).find(_resolve(dotted), dotted, globs={})
    return sorted((t for t in tests if t.examples), key=lambda t: t.name)


CASES = [test for name in DOCUMENTED for test in _examples(name)]


@pytest.fixture
def one_thread_in_tmp(tmp_path, monkeypatch):
    """One torch thread (the machine is shared), and ``tempfile.mkdtemp()`` inside pytest's ``tmp_path``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    yield
    torch.set_num_threads(threads)


def run_example(test: doctest.DocTest) -> tuple[doctest.TestResults, str]:
    """``(results, the report of every failed example)`` of one docstring's examples."""
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    results = runner.run(test, out=report.append, clear_globs=True)
    return results, "".join(report)


@pytest.mark.parametrize("test", CASES, ids=[t.name for t in CASES])
def test_example_runs(test, one_thread_in_tmp):
    results, report = run_example(test)
    assert results.attempted == len(test.examples)
    assert results.failed == 0, f"{test.name} 的 Example 与实际输出不符：\n{report}"


@pytest.mark.parametrize("dotted", DOCUMENTED + DOCUMENTED_METHODS)
def test_every_documented_object_has_args_returns_and_an_example(dotted):
    """Google style: ``Args:``, ``Returns:`` (not for a class) and an ``Example:`` with at least one ``>>>``."""
    obj = _resolve(dotted)
    doc = inspect.getdoc(obj) or ""
    sections = ["Args:", "Example:"] + ([] if inspect.isclass(obj) else ["Returns:"])
    missing = [s for s in sections if s not in doc]
    assert not missing, f"{dotted} 的 docstring 缺少 {'、'.join(missing)}"
    assert ">>> " in doc.split("Example:", 1)[1], f"{dotted} 的 Example 里没有可运行的 >>> 行"


def test_a_wrong_example_fails(one_thread_in_tmp):
    """The runner is not blind: an Example whose shown output differs from the real one is a failure."""
    wrong = doctest.DocTestParser().get_doctest(">>> 1 + 1\n3\n", {}, "wrong", None, 0)
    results, report = run_example(wrong)
    assert results.failed == 1 and "Expected:\n    3\nGot:\n    2" in report
