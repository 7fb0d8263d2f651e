"""Fixtures shared by the training tests."""

from __future__ import annotations

import pytest
from training_sim import TINY, curated_world

from training.data import BipartiteGraph, build_graph, load_window, temporal_split


@pytest.fixture(scope="module")
def tiny_graph(tmp_path_factory) -> BipartiteGraph:
    """The training graph of the tiny simulated world (its last day held out)."""
    settings = curated_world(tmp_path_factory.mktemp("tiny"), TINY)
    train, _ = temporal_split(load_window(settings, TINY.day(TINY.days), 14).interactions, 1)
    return build_graph(train)
