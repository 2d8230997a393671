"""Shared fixtures: tiny COCO datasets made on the fly (nothing is downloaded)."""

import pytest
from tinydata import make_coco_dataset


@pytest.fixture
def tiny_coco(tmp_path):
    return make_coco_dataset(tmp_path / "数据 集")
