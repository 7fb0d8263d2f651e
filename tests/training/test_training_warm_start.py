"""Warm-started nightly retraining: the champion's embeddings seed the next run, by external id.

One SQLite MLflow store is shared by the module; the product-path tests run in file
order and build on each other's registry state (which version is the champion).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from training_sim import curated_world, events

import training.train as train_module
from ingest.simulator import SimulationConfig
from training import registry
from training.data import BipartiteGraph, load_window, temporal_split, validation_split
from training.embeddings import ModelEmbeddings
from training.ids import IdMap
from training.models import model_params
from training.retriever import train_config, train_retriever
from training.retriever_init import choose_init, unseen_validation
from training.train import _build_model, train_lightgcn
from training.train_config import TrainConfig
from training.warm_start import warm_start_rows

# Many users and a long item tail for the events: a champion trained on one day does not know them all.
WORLD = SimulationConfig(n_users=1500, n_items=800, days=6, events_per_day=2500, drift_day=None)
DS = WORLD.day(WORLD.days)
YESTERDAY = DS - dt.timedelta(days=1)
EPOCHS = 4


# Unit: matching by external id ----------------------------------------------------------
def _graph(users, items, edges) -> BipartiteGraph:
    return BipartiteGraph(IdMap.from_values(users), IdMap.from_values(items), np.array(edges, dtype=np.int64).T)


def _init(user_ids, item_ids, dim=4, seed=0) -> ModelEmbeddings:
    rng = np.random.default_rng(seed)
    return ModelEmbeddings(
        np.array(user_ids, np.int64),
        np.array(item_ids, np.int64),
        rng.normal(size=(len(user_ids), dim)).astype(np.float32),
        rng.normal(size=(len(item_ids), dim)).astype(np.float32),
    )


GRAPH = _graph([10, 20, 30], [100, 200, 300, 400], [(0, 0), (1, 1), (2, 2), (2, 3)])


def test_rows_are_matched_by_id_in_any_order():
    # The champion knows users 30 and 10 (in that order) and a user that left (99); items
    # 400, 100 and two that left the catalog.
    init = _init([30, 99, 10], [555, 400, 100, 777])
    users, items = warm_start_rows(GRAPH, init)
    np.testing.assert_array_equal(users, [2, -1, 0])  # 10 -> row 2, 20 is new, 30 -> row 0
    np.testing.assert_array_equal(items, [2, -1, -1, 1])  # 100 -> row 2, 200/300 new, 400 -> row 1
    empty = _init([], [])
    assert (warm_start_rows(GRAPH, empty)[0] == -1).all() and (warm_start_rows(GRAPH, empty)[1] == -1).all()


@pytest.mark.parametrize("propagation", ["symmetric_csr", "edge_index"])
def test_known_rows_start_from_init_and_new_rows_from_the_usual_init(propagation):
    config = TrainConfig(embedding_dim=4, num_layers=2, init_std=0.1, propagation=propagation)
    init = _init([30, 99, 10], [555, 400, 100, 777])
    torch.manual_seed(config.seed)
    cold = _build_model(GRAPH, config)[0].embedding.weight.detach().clone()
    torch.manual_seed(config.seed)
    warm = _build_model(GRAPH, config, init)[0].embedding.weight.detach()
    n = GRAPH.n_users
    torch.testing.assert_close(warm[0], torch.from_numpy(init.user_emb[2]))  # user 10
    torch.testing.assert_close(warm[2], torch.from_numpy(init.user_emb[0]))  # user 30
    torch.testing.assert_close(warm[n + 0], torch.from_numpy(init.item_emb[2]))  # item 100
    torch.testing.assert_close(warm[n + 3], torch.from_numpy(init.item_emb[1]))  # item 400
    for new in (1, n + 1, n + 2):  # user 20, items 200 and 300: as a cold start draws them
        torch.testing.assert_close(warm[new], cold[new])


def test_training_returns_the_layer0_embeddings_and_refuses_another_dimension():
    config = TrainConfig(epochs=2, embedding_dim=4, num_layers=2, init_std=0.1, batch_size=2, eval_every=0)
    result = train_lightgcn(GRAPH, config, progress=False)
    base = result.base_embeddings
    np.testing.assert_array_equal(base.user_ids, result.embeddings.user_ids)
    np.testing.assert_array_equal(base.item_ids, result.embeddings.item_ids)
    assert not np.allclose(base.item_emb, result.embeddings.item_emb)  # propagated != layer 0
    # Zero layers (mf): the served embeddings are the layer-0 ones.
    mf = train_lightgcn(GRAPH, dataclasses.replace(config, num_layers=0), progress=False)
    np.testing.assert_allclose(mf.base_embeddings.item_emb, mf.embeddings.item_emb, rtol=0, atol=1e-6)
    # Resuming from the run's own layer-0 embeddings for 0 more epochs changes nothing.
    again = train_lightgcn(GRAPH, dataclasses.replace(config, epochs=0), progress=False, init=base)
    np.testing.assert_allclose(again.embeddings.item_emb, result.embeddings.item_emb, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="dimension 8"):
        train_lightgcn(GRAPH, config, progress=False, init=_init([10], [100], dim=8))


def test_checkpoint_of_a_warm_start_does_not_resume_a_cold_run(tmp_path):
    config = TrainConfig(epochs=2, embedding_dim=4, num_layers=1, init_std=0.1, batch_size=2, eval_every=0)
    train_lightgcn(GRAPH, config, progress=False, checkpoint_dir=tmp_path, init=_init([10], [100]))
    with pytest.raises(ValueError, match="init_sha256"):
        train_lightgcn(GRAPH, config, progress=False, checkpoint_dir=tmp_path, resume=True)


def test_embeddings_round_trip_with_and_without_layer0(tmp_path):
    served, base = _init([1, 2], [5, 6, 7], seed=1), _init([1, 2], [5, 6, 7], seed=2)
    served.save(tmp_path / "with", base=base)
    loaded = ModelEmbeddings.load_base(tmp_path / "with")
    np.testing.assert_array_equal(loaded.item_emb, base.item_emb)
    np.testing.assert_array_equal(ModelEmbeddings.load(tmp_path / "with").item_emb, served.item_emb)
    served.save(tmp_path / "without")
    assert ModelEmbeddings.load_base(tmp_path / "without") is None


def test_warm_starts_validate_on_what_the_champion_did_not_see():
    fit = events([(1, 10, "2025-01-01T10:00:00Z"), (2, 10, "2025-01-02T10:00:00Z")])
    validation = events(
        [(1, 11, "2025-01-02T23:59:59Z"), (1, 12, "2025-01-03T00:00:00Z"), (2, 13, "2025-01-04T08:00:00Z")]
    )
    fit2, validation2 = unseen_validation(fit, validation, dt.date(2025, 1, 2))
    assert fit2["item_id"].tolist() == [10, 10, 11] and validation2["item_id"].tolist() == [12, 13]
    assert len(fit2) + len(validation2) == len(fit) + len(validation)


# The product path: train_retriever with a registry -----------------------------------------
@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return curated_world(tmp_path_factory.mktemp("warm-start"), WORLD, training={"epochs": EPOCHS, "batch_size": 1024})


@pytest.fixture
def starts(monkeypatch):
    """Every model the trainer builds: its graph, its initial layer-0 weights and the init it got."""
    built = []
    original = train_module._build_model

    def spy(graph, config, init=None):
        model, adj = original(graph, config, init)
        built.append((graph, model.embedding.weight.detach().clone(), init))
        return model, adj

    monkeypatch.setattr(train_module, "_build_model", spy)
    return built


def _tags(settings, summary):
    run = registry.client_for(settings).get_run(summary.run_id)
    return run.data.tags, run.data.params, registry.get_version_tags(settings, summary.model_version)


@pytest.fixture(scope="module")
def champion(settings):
    """A first model (no champion yet: trained from scratch) on one day, promoted to champion."""
    summary = train_retriever(settings, YESTERDAY, window_days=2)
    registry.set_alias(settings, registry.CHAMPION, summary.model_version)
    return summary


def test_without_a_champion_the_run_trains_from_scratch_and_stores_layer0(settings, champion):
    assert champion.warm_start is False and champion.warm_start_from is None
    assert champion.init_reason == "no champion to start from"
    assert champion.full_retrain_ds == YESTERDAY
    run_tags, params, version_tags = _tags(settings, champion)
    assert run_tags["warm_start"] == params["warm_start"] == version_tags["warm_start"] == "false"
    assert run_tags["init_reason"] == params["init_reason"] == champion.init_reason
    assert json.loads(version_tags["summary"])["init_reason"] == champion.init_reason
    assert version_tags["full_retrain_ds"] == YESTERDAY.isoformat()
    base = registry.load_warm_start_embeddings(settings, champion.model_version)
    served = registry.load_model_embeddings(settings, champion.model_version)
    assert base.meta["embeddings_layer"] == "base" and served.meta["warm_start"] is False
    np.testing.assert_array_equal(base.item_ids, served.item_ids)
    assert not np.allclose(base.item_emb, served.item_emb)


def test_nightly_run_starts_from_the_champion_by_id(settings, champion, starts):
    summary = train_retriever(settings, DS)
    source = registry.load_warm_start_embeddings(settings, champion.model_version)
    assert summary.warm_start is True and summary.warm_start_from == champion.model_version
    assert summary.init_reason.startswith(f"warm start from champion v{champion.model_version} (base")
    assert summary.full_retrain_ds == YESTERDAY
    assert len(starts) == 2  # early-stopped fit, then the refit on the whole window
    for graph, weight, init in starts:
        assert init is not None
        np.testing.assert_array_equal(init.item_emb, source.item_emb)
        users, items = warm_start_rows(graph, source)
        known_users, known_items = np.flatnonzero(users >= 0), np.flatnonzero(items >= 0)
        # The champion (one day) does not know everyone in the 14-day window.
        assert 0 < len(known_users) < graph.n_users and 0 < len(known_items) < graph.n_items
        np.testing.assert_array_equal(weight[known_users].numpy(), source.user_emb[users[known_users]])
        np.testing.assert_array_equal(weight[graph.n_users + known_items].numpy(), source.item_emb[items[known_items]])
        new_users = np.flatnonzero(users < 0)
        # New ones as a cold start of the same graph draws them (same seed, same init_std).
        torch.manual_seed(settings.seed)
        cold = _build_model(graph, TrainConfig(**{**model_params("lightgcn", train_config(settings), settings)}))
        torch.testing.assert_close(weight[new_users], cold[0].embedding.weight.detach()[new_users])
    run_tags, params, version_tags = _tags(settings, summary)
    assert run_tags["warm_start"] == params["warm_start"] == version_tags["warm_start"] == "true"
    assert run_tags["warm_start_from"] == params["warm_start_from"] == str(champion.model_version)
    assert params["train.eval_every"] == str(settings.training.warm_start_eval_every)
    assert params["train.patience"] == str(settings.training.warm_start_patience)
    assert float(params["train.learning_rate"]) == pytest.approx(
        settings.training.learning_rate * settings.training.warm_start_learning_rate_factor
    )
    meta = registry.load_model_embeddings(settings, summary.model_version).meta
    assert (meta["warm_start"], meta["warm_start_from"], meta["init_reason"]) == (
        True,
        champion.model_version,
        summary.init_reason,
    )
    assert meta["n_warm_users"] == int((warm_start_rows(starts[-1][0], source)[0] >= 0).sum())
    assert meta["full_retrain_ds"] == YESTERDAY.isoformat()
    assert meta["full_retrain_epochs"] == meta["validation"]["full_refit_epochs"] == champion.refit_epochs
    # Early stopping watched only the validation events after the champion's last training day.
    window = load_window(settings, DS, settings.training.window_days)
    train, _ = temporal_split(window.interactions, settings.training.holdout_days, end=window.end)
    _, validation = validation_split(train, settings.training.validation_fraction, settings.seed)
    unseen = validation["event_ts"] >= pd.Timestamp(source.meta["train_until"], tz="UTC") + pd.Timedelta(days=1)
    assert 0 < summary.n_validation == int(unseen.sum()) < len(validation)


def test_rerun_reuses_the_warm_version_even_after_its_promotion(settings, champion):
    warm = train_retriever(settings, DS)
    assert warm.reused and warm.warm_start
    registry.set_alias(settings, registry.CHAMPION, warm.model_version)
    try:  # the champion is now this day's own model: a rerun starts where it started
        again = train_retriever(settings, DS)
        assert again.reused and again.model_version == warm.model_version
    finally:
        registry.set_alias(settings, registry.CHAMPION, champion.model_version)


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"full_retrain": True}, "full retrain requested (full_retrain)"),
        ({"reason": "drift on 2025-01-06, alert: item_popularity"}, "drift-triggered run"),
    ],
)
def test_requested_and_drift_triggered_runs_train_from_scratch(settings, champion, starts, kwargs, reason):
    warm = train_retriever(settings, DS)
    summary = train_retriever(settings, DS, **kwargs)
    assert summary.warm_start is False and summary.warm_start_from is None
    assert summary.init_reason.startswith(reason)
    assert summary.model_version != warm.model_version
    if not summary.reused:  # the second case finds the first one's version: the same full retrain
        assert len(starts) >= 2 and all(init is None for _, _, init in starts[-2:])
    run_tags, params, _ = _tags(settings, summary)
    assert run_tags["warm_start"] == params["warm_start"] == "false" and run_tags["warm_start_from"] == ""
    assert summary.full_retrain_ds == DS
    # A full retrain of the same data is reused for the same request, never for a warm start.
    assert train_retriever(settings, DS, **kwargs).model_version == summary.model_version


def test_mismatched_dimension_falls_back_with_a_logged_reason(settings, champion, caplog):
    small = settings.updated({"training.embedding_dim": 16})
    with caplog.at_level(logging.INFO, logger="training.retriever"):
        summary = train_retriever(small, DS)
    expected = f"champion v{champion.model_version} has dimension 64, this run 16"
    assert summary.warm_start is False and summary.init_reason == expected
    assert expected in caplog.messages
    assert _tags(settings, summary)[0]["init_reason"] == expected


def _params(settings, kind="lightgcn", **changes):
    return model_params(
        kind, train_config(settings.updated({f"training.{k}": v for k, v in changes.items()})), settings
    )


@pytest.mark.parametrize(
    "kind, changes, reason",
    [
        ("mf", {}, "is lightgcn, this run trains mf"),
        ("lightgcn", {"num_layers": 2}, "has 3 layers, this run 2"),
        ("gfcf", {}, "gfcf has no trained parameters"),
        ("lightgcn", {"full_retrain_every_days": 1}, "scheduled full retrain"),
        ("lightgcn", {"full_retrain_every_days": 0}, "warm starts are off"),
        ("lightgcn", {"holdout_days": 3}, "not before this run's holdout"),
    ],
)
def test_champions_that_cannot_seed_the_run_mean_a_full_retrain(settings, champion, kind, changes, reason):
    changed = settings.updated({f"training.{k}": v for k, v in changes.items()})
    init = choose_init(changed, DS, kind, _params(settings, kind, **changes), reason="schedule", full_retrain=False)
    assert not init.warm_start and init.embeddings is None and reason in init.reason
    ok = choose_init(settings, DS, "lightgcn", _params(settings), reason="schedule", full_retrain=False)
    assert ok.warm_start and ok.source_version == champion.model_version


def _register_other_catalog(settings, served, base, **meta):
    """A champion whose catalog differs from the window's, its ids in shuffled order."""
    meta = {
        "model": "lightgcn",
        "params": _params(settings),
        "train_until": (YESTERDAY - dt.timedelta(days=1)).isoformat(),
        **meta,
    }
    version = registry.register_model(
        settings,
        dataclasses.replace(served, meta=meta),
        base_embeddings=base,
        tags={"ds": YESTERDAY.isoformat(), "model": "lightgcn"},
        alias=registry.CHAMPION,
    )
    return version


def _other_catalog(champion_version: int, settings, seed: int) -> tuple[ModelEmbeddings, ModelEmbeddings]:
    known = registry.load_model_embeddings(settings, champion_version)
    rng = np.random.default_rng(seed)
    users = rng.permutation(np.concatenate([known.user_ids[::2], [900_001, 900_002]]))  # half the users, two gone
    items = rng.permutation(np.concatenate([known.item_ids[1::2], [800_001, 800_002, 800_003]]))

    def random() -> ModelEmbeddings:
        return ModelEmbeddings(
            users,
            items,
            rng.normal(size=(len(users), 64)).astype(np.float32),
            rng.normal(size=(len(items), 64)).astype(np.float32),
        )

    return random(), random()


@pytest.mark.parametrize("with_base", [True, False])
def test_a_champion_with_another_catalog_is_mapped_by_id(settings, champion, starts, with_base):
    served, base = _other_catalog(champion.model_version, settings, seed=int(with_base))
    version = _register_other_catalog(settings, served, base if with_base else None)
    try:
        summary = train_retriever(settings, DS)
    finally:
        registry.set_alias(settings, registry.CHAMPION, champion.model_version)
    assert summary.warm_start and summary.warm_start_from == version
    assert ("(base embeddings" if with_base else "(served embeddings") in summary.init_reason
    source = base if with_base else served
    graph, weight, _ = starts[-1]
    for ids, emb, offset, graph_ids in (
        (source.user_ids, source.user_emb, 0, graph.users.ids),
        (source.item_ids, source.item_emb, graph.n_users, graph.items.ids),
    ):
        position = {int(i): row for row, i in enumerate(graph_ids)}
        kept = [(position[int(i)], row) for row, i in enumerate(ids) if int(i) in position]
        assert len(kept) == len(ids) - (2 if offset == 0 else 3)  # those that left are dropped
        nodes, rows = map(np.array, zip(*kept, strict=True))
        np.testing.assert_array_equal(weight[offset + nodes].numpy(), emb[rows])
    meta = registry.load_model_embeddings(settings, summary.model_version).meta
    assert meta["warm_start_embeddings"] == ("base" if with_base else "served")
    assert meta["n_warm_items"] == len(source.item_ids) - 3


def test_mf_warm_starts_from_an_mf_champion(settings, champion, starts):
    first = train_retriever(settings, YESTERDAY, window_days=2, model="mf")
    # The lightgcn champion is this day's own model, trained from scratch: so is this rerun of its day.
    assert not first.warm_start
    assert first.init_reason == f"champion v{champion.model_version} is this day's model, trained from scratch"
    source = registry.load_warm_start_embeddings(settings, first.model_version)
    served = registry.load_model_embeddings(settings, first.model_version)
    np.testing.assert_allclose(source.item_emb, served.item_emb, rtol=0, atol=1e-6)  # no propagation
    registry.set_alias(settings, registry.CHAMPION, first.model_version)
    try:
        summary = train_retriever(settings, DS, model="mf")
    finally:
        registry.set_alias(settings, registry.CHAMPION, champion.model_version)
    assert summary.warm_start and summary.warm_start_from == first.model_version
    graph, weight, init = starts[-1]
    users, _ = warm_start_rows(graph, source)
    known = np.flatnonzero(users >= 0)
    np.testing.assert_array_equal(weight[known].numpy(), source.user_emb[users[known]])
