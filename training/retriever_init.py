"""How a retriever run's trained parameters start: a warm start from the champion, or from scratch.

**Warm start and full retrains.** ``lightgcn`` and ``mf`` usually start from the
serving champion's layer-0 embeddings instead of random ones (:func:`choose_init`):
the users and items the champion knows get its vectors (matched by external id), new
ones the usual random init, and those that left the window are dropped. A warm-started
run validates only on the validation events newer than the champion's training data
(:func:`unseen_validation`), evaluates every ``settings.training.warm_start_eval_every`` epochs,
stops after ``settings.training.warm_start_patience`` evaluations without progress and refits
(again from the champion) for the chosen epochs: on the simulator (5,000 users and
items, 10,000 events a day) 3 + 2 epochs in 11 s instead of 10 + 4 in 37 s, holdout
Recall@20 0.1610 against 0.1632 (``benchmarks/bench_warm_start.py``); without the refit
0.1590. A chain of warm starts slowly falls behind a full retrain (about -0.007 after
five nights on a smaller simulated world), which the scheduled full retrain bounds. A
run trains from scratch instead (a *full retrain*) when asked to (``full_retrain=True``),
when it is drift-triggered (``reason`` starting with ``"drift"``), when there is no
champion, when the champion's last full
retrain is ``settings.training.full_retrain_every_days`` days old or more, or when the champion
cannot seed it (another kind, dimension or number of layers, or trained on days inside
this run's holdout). Which it was is the run's param and tag ``warm_start``,
``warm_start_from`` (the champion's version) and ``init_reason``, and the same keys of
the summary, the version tags and ``meta``. The canary judges both kinds alike.

The users and items are matched by :mod:`training.warm_start`; the training loop applies
the chosen start (:func:`training.train.train_lightgcn`, ``init``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

import pandas as pd

from graphrec import contract
from graphrec.settings import Settings
from training import registry
from training.data import holdout_start
from training.embeddings import ModelEmbeddings
from training.models import TRAINED_KINDS


@dataclasses.dataclass(frozen=True)
class Init:
    """How a run's trained parameters start: from scratch or from the champion's.

    Args:
        warm_start: start from ``embeddings`` (else from the random init).
        reason: why, in words (the run's ``init_reason``).
        source_version: the champion version warm-started from.
        embeddings: its layer-0 embeddings (or its served ones, see
            :func:`training.registry.load_warm_start_embeddings`).
        full_retrain_ds: the day of the last full retrain in the source's lineage (a
            warm start), ``None`` for a full retrain (then it is the run's own day).
        full_retrain_epochs: the epochs that full retrain chose, when known.
        trained_until: the last day the source trained on (a warm start).
    """

    warm_start: bool
    reason: str
    source_version: int | None = None
    embeddings: ModelEmbeddings | None = None
    full_retrain_ds: str | None = None
    full_retrain_epochs: int | None = None
    trained_until: dt.date | None = None

    def record(self) -> dict[str, Any]:
        """``warm_start, warm_start_from, init_reason`` (summary, ``meta``, tags)."""
        return {"warm_start": self.warm_start, "warm_start_from": self.source_version, "init_reason": self.reason}


def _days_tag(tags: Mapping[str, str], name: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(tags[name])
    except (KeyError, ValueError):
        return None


def choose_init(
    settings: Settings, ds: dt.date, kind: str, params: dict[str, Any], *, reason: str, full_retrain: bool
) -> Init:
    """Warm start from the champion, or a full retrain from scratch, and why.

    The source is the ``champion`` version of ``settings.mlflow.retriever_model_name``; when
    the champion is this day's own model (a rerun after its promotion), the model it
    started from, so that a rerun repeats the original run. Reads the source's version
    tags (``ds``, ``model``, ``full_retrain_ds``) and, when they allow a warm start, its
    warm-start embeddings and ``meta`` (``params``, ``train_until``).

    Args:
        settings: ``full_retrain_every_days``, ``holdout_days`` and the registry.
        ds: the run's day.
        kind: the kind to train; only ``lightgcn`` and ``mf`` can be warm-started.
        params: its params (:func:`training.models.model_params`): the champion must
            have the same ``embedding_dim`` (and ``num_layers`` for ``lightgcn``).
        reason: the run's reason; ``"drift..."`` always retrains from scratch.
        full_retrain: retrain from scratch (the DAG Param ``full_retrain``).
    """

    def full(why: str) -> Init:
        return Init(False, why)

    if kind not in TRAINED_KINDS:
        return full(f"{kind} has no trained parameters to start from")
    if full_retrain:
        return full("full retrain requested (full_retrain)")
    if reason.startswith("drift"):
        return full(f"drift-triggered run ({reason})")
    if settings.training.full_retrain_every_days == 0:
        return full("warm starts are off (full_retrain_every_days = 0)")
    version = registry.get_alias_version(settings, registry.CHAMPION)
    if version is None:
        return full("no champion to start from")
    tags = registry.get_version_tags(settings, version)
    seen = {version}
    while _days_tag(tags, "ds") == ds:  # this day's own champion: start where it started
        source = tags.get("warm_start_from") if tags.get("warm_start") == "true" else None
        if not source or int(source) in seen:
            return full(f"champion v{version} is this day's model, trained from scratch")
        version = int(source)
        seen.add(version)
        tags = registry.get_version_tags(settings, version)
    champion = f"champion v{version}"
    trained_for = _days_tag(tags, "ds")
    if tags.get("model") != kind:
        return full(f"{champion} is {tags.get('model') or 'of an unknown kind'}, this run trains {kind}")
    last_full = _days_tag(tags, "full_retrain_ds") or trained_for  # versions from before warm starts: their own day
    if last_full is None:
        return full(f"{champion} records no training day")
    age = (ds - last_full).days
    if age >= settings.training.full_retrain_every_days:
        return full(
            f"scheduled full retrain: {champion}'s last full retrain ({last_full}) is {age} days old "
            f"(full_retrain_every_days = {settings.training.full_retrain_every_days})"
        )
    embeddings = registry.load_warm_start_embeddings(settings, version)
    theirs = embeddings.meta.get("params") or {}
    if embeddings.dim != params["embedding_dim"]:
        return full(f"{champion} has dimension {embeddings.dim}, this run {params['embedding_dim']}")
    if kind == "lightgcn" and theirs.get("num_layers") != params["num_layers"]:
        return full(f"{champion} has {theirs.get('num_layers')} layers, this run {params['num_layers']}")
    until = embeddings.meta.get("train_until")
    if until is None or dt.date.fromisoformat(until) >= holdout_start(ds, settings.training.holdout_days).date():
        return full(f"{champion} was trained on days up to {until}, not before this run's holdout")
    epochs = tags.get("full_retrain_epochs") or (embeddings.meta.get("validation") or {}).get("refit_epochs")
    layer = embeddings.meta["embeddings_layer"]
    return Init(
        True,
        f"warm start from {champion} ({layer} embeddings; last full retrain {last_full}, {age} days old)",
        version,
        embeddings,
        last_full.isoformat(),
        int(epochs) if epochs else None,
        dt.date.fromisoformat(until),
    )


def unseen_validation(
    fit: pd.DataFrame, validation: pd.DataFrame, trained_until: dt.date
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Move the validation events up to ``trained_until`` back into the fit part.

    A warm start begins from a champion that trained on most of the validation split (each
    user's newest events of the window, most of them older than the newest day): scored on
    them, it looks best before any training and better the more it memorises, so early
    stopping could not see it overfit. It validates on the events the champion never saw.
    """
    seen = (validation[contract.EVENT_TS] < pd.Timestamp(trained_until + dt.timedelta(days=1), tz="UTC")).to_numpy()
    return pd.concat([fit, validation[seen]], ignore_index=True), validation[~seen].reset_index(drop=True)


def warm_start_params(settings: Settings, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` of a warm-started run: its learning rate, evaluation cadence and patience."""
    patience = settings.training.warm_start_patience if params.get("patience") else 0
    changes: dict[str, Any] = {"eval_every": settings.training.warm_start_eval_every, "patience": patience}
    if "learning_rate" in params:
        changes["learning_rate"] = params["learning_rate"] * settings.training.warm_start_learning_rate_factor
    return {**params, **changes}
