"""The offline store's snapshots: what build_features needs and writes."""

from __future__ import annotations

import pytest

from features.snapshots import build_features
from graphrec.settings import Settings


def test_build_features_needs_the_curated_partition(tmp_path):
    with pytest.raises(FileNotFoundError):
        build_features(Settings(home=tmp_path), "2030-01-01")
