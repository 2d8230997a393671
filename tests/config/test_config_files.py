"""The shipped variant YAMLs: shared base files via ``__include__``, resolved configs frozen in a fixture.

``tests/fixtures/variant_configs.json`` holds every variant's fully merged dict as it was when each variant was
one self-contained file (written before the files were split into ``deimv2/configs/base/``); the split must not
change a single value, type or key order. One key was added since, on purpose: ``channels_last: true`` of the
HGNetv2 variants (``base/hgnetv2.yaml``, the training default measured in ``docs/training.md``).
"""

import json
from pathlib import Path

import pytest
import yaml
from setuptools.config.pyprojecttoml import read_configuration

from deimv2.config.loader import (
    CONFIG_DIR,
    VARIANTS,
    load_config,
    merge_dicts,
    read_yaml,
    resolve_config_path,
    save_config,
)

ROOT = Path(__file__).resolve().parents[2]
FROZEN = json.loads((ROOT / "tests" / "fixtures" / "variant_configs.json").read_text(encoding="utf-8"))
BASE_DIR = CONFIG_DIR / "base"


def _types(x):
    """The same structure with every leaf replaced by its type name (1 vs 1.0 vs True, None)."""
    if isinstance(x, dict):
        return {k: _types(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_types(v) for v in x]
    return type(x).__name__


def _own_keys(path: Path) -> dict:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.pop("__include__", None)
    return data


def _includes(path: Path) -> list[Path]:
    inc = yaml.safe_load(path.read_text(encoding="utf-8")).get("__include__") or []
    return [(path.parent / p).resolve() for p in ([inc] if isinstance(inc, str) else inc)]


def test_fixture_covers_every_variant():
    assert sorted(FROZEN) == sorted(VARIANTS)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_resolved_variant_identical_to_frozen(variant):
    resolved = read_yaml(resolve_config_path(variant))
    assert resolved == FROZEN[variant]
    assert _types(resolved) == _types(FROZEN[variant])  # 1 stays int, 1.0 float, null None
    # same key order at every level, so a saved config.yaml reads section by section as before
    assert json.dumps(resolved, ensure_ascii=False) == json.dumps(FROZEN[variant], ensure_ascii=False)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_file_states_only_what_differs(variant):
    """Every key a variant file writes changes the value its base files give (nothing restated)."""
    path = resolve_config_path(variant)
    includes = _includes(path)
    assert includes and all(p.parent == BASE_DIR for p in includes), "a variant includes only base/ files"
    base: dict = {}
    for inc in includes:
        base = merge_dicts(base, read_yaml(inc))

    def restated(own, have, prefix=""):
        for k, v in own.items():
            if isinstance(v, dict) and isinstance(have.get(k), dict):
                yield from restated(v, have[k], f"{prefix}{k}.")
            elif k in have and have[k] == v and _types(have[k]) == _types(v):
                yield prefix + k

    assert list(restated(_own_keys(path), base)) == []
    assert len(path.read_text(encoding="utf-8").splitlines()) < 100  # was ~230 lines when self-contained


def test_base_files_are_shared():
    """Each base file is used by at least two variants (otherwise its content belongs in the variant)."""
    users: dict[Path, int] = {}
    for name in VARIANTS.values():
        stack = _includes(CONFIG_DIR / f"{name}.yaml")
        while stack:
            p = stack.pop()
            users[p] = users.get(p, 0) + 1
            stack.extend(_includes(p))
    assert set(users) == set(BASE_DIR.glob("*.yaml"))
    assert min(users.values()) >= 2, users


@pytest.mark.parametrize("variant", ["atto", "s"])
def test_save_config_writes_a_self_contained_file(variant, tmp_path):
    cfg = load_config(variant)
    out = save_config(cfg, tmp_path / "elsewhere" / "config.yaml")  # no base/ folder next to it
    text = out.read_text(encoding="utf-8")
    assert "__include__" not in text
    assert read_yaml(out) == cfg.raw
    assert load_config(out).raw == cfg.raw


def test_package_data_ships_every_config_file():
    patterns = read_configuration(ROOT / "pyproject.toml")["tool"]["setuptools"]["package-data"]["deimv2"]
    pkg = ROOT / "deimv2"
    shipped = {p for pat in patterns for p in pkg.glob(pat)}
    wanted = set(CONFIG_DIR.rglob("*.yaml"))
    assert BASE_DIR / "deimv2.yaml" in wanted
    assert wanted <= shipped, sorted(str(p.relative_to(pkg)) for p in wanted - shipped)
