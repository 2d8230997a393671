"""The environment report."""

from __future__ import annotations

import sys

import pytest

from deimv2.tutorial import environment as checks_mod
from deimv2.tutorial.environment import CHECK_KEYS, checks
from deimv2.utils import fonts


def test_checks_returns_all_keys_and_prints_table(capsys, tmp_path):
    result = checks(verbose=True, path=tmp_path)
    out = capsys.readouterr().out
    assert tuple(result) == CHECK_KEYS
    for key, row in result.items():
        assert set(row) == {"label", "status", "detail", "hint"}, key
        assert row["status"] in ("ok", "warn", "fail"), key
        assert row["label"] in out
        if row["status"] != "ok":
            assert row["hint"] and row["hint"] in out, key
    assert out.splitlines()[0].split() == ["项目", "状态", "详情"]
    assert result["python"]["status"] == "ok"
    assert result["torch"]["status"] == "ok"
    assert result["cjk_font"]["status"] == "ok"
    assert str(tmp_path) in result["disk"]["detail"]


def test_quiet_mode_prints_nothing(capsys):
    checks(verbose=False)
    assert capsys.readouterr().out == ""


def test_missing_font_is_reported_with_install_hint(monkeypatch, capsys):
    def no_font():
        raise fonts.DEIMv2Error("未找到可以显示中文的字体")

    monkeypatch.setattr(fonts, "find_cjk_font", no_font)
    row = checks(verbose=True)["cjk_font"]
    out = capsys.readouterr().out
    assert row["status"] == "fail"
    assert "pip install pylopdf-fonts-zh-cn" in row["hint"]
    assert "fonts-noto-cjk" in row["hint"]
    assert "❌ 有 1 项必须修复" in out


def test_missing_optional_package_is_a_warning(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # makes `import tensorboard` fail
    row = checks(verbose=False)["tensorboard"]
    assert row["status"] == "warn" and "pip install tensorboard" in row["hint"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/meminfo exists only on Linux")
def test_memory_without_psutil(monkeypatch):
    with_psutil = checks_mod._memory_bytes()
    monkeypatch.setitem(sys.modules, "psutil", None)
    total, avail = checks_mod._memory_bytes()
    assert total is not None and total > 256 * 1024**2
    assert avail is not None and 0 < avail <= total
    if with_psutil[0] is not None:
        assert abs(total - with_psutil[0]) < 0.05 * total


def test_helpers():
    assert checks_mod._version_tuple("2.14.1+cu130") == (2, 14, 1)
    assert checks_mod._version_tuple("0.21.0a0") == (0, 21, 0)
    assert checks_mod._display_width("中文ab") == 6
    assert checks_mod._display_width("✅") == 2
    assert checks_mod._display_width("⚠️") == 2
    assert checks_mod._pad("船", 4) == "船  "
