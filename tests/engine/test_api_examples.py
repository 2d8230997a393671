"""The Example sections of ``deimv2.train`` and ``deimv2.evaluate`` run as written (doctest): the bundled demo set,
96² input, one optimizer step, into a temporary folder (here under the test's own ``tmp_path``)."""

import doctest
import tempfile

import pytest

import deimv2
from deimv2.engine import api


@pytest.mark.parametrize("name", ["train", "evaluate"])
def test_docstring_example_runs(name, tmp_path, monkeypatch):
    func = getattr(deimv2, name)
    assert func is getattr(api, name)  # the documented function is the public one
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the example's mkdtemp() lands in tmp_path
    tests = doctest.DocTestFinder().find(func, name, globs={})
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.attempted >= 8 and result.failed == 0, "".join(report)
    assert any(tmp_path.rglob("best.pth"))  # it really trained, in the temporary folder
