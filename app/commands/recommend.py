"""``graphrec recommend``: one user's top-k from the published index, as the service answers it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from app.progress import step
from features.online import OnlineFeatures
from graphrec.lake import list_partitions, parse_ds
from graphrec.settings import Settings, get_settings
from serving.recommender import Recommender
from serving.schemas import Recommendation
from serving.swap import NoPublishedIndex
from serving.versions import current_version


def cmd_recommend(args: argparse.Namespace) -> int:
    settings = get_settings()
    version, manifest = _published(settings)
    ranker_features = None
    if settings.ranker.enabled and settings.feast_dir.exists():
        ranker_features = OnlineFeatures(settings)  # opens Feast on its first read
    recent_items = _recent_items_fn(settings, manifest)
    recommender = Recommender(
        settings,
        recent_items_fn=recent_items,
        ranker_features_fn=ranker_features,
        rerank_candidates=settings.ranker.candidates,
    )
    ranker = " and its ranker" if manifest.get("ranker_version") is not None else ""
    try:
        with step(f"loading index {version or '(none published)'}{ranker}"):
            recommender.refresh()
            recommender.refresh_canary()
    except NoPublishedIndex as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    reads = "reading online features and answering" if ranker_features or recent_items else "answering"
    with step(f"{reads} user {args.user_id}"):
        rec = recommender.recommend(args.user_id, args.k)
    if args.json:
        print(rec.model_dump_json(indent=2))
    else:
        print(format_recommendation(rec, ranker_features=ranker_features is not None))
    return 0


def format_recommendation(rec: Recommendation, *, ranker_features: bool = True) -> str:
    """The text answer: who answered (versions, variant), how it is ordered, then the items.

    Args:
        rec (Recommendation): the recommender's answer.
        ranker_features (bool): whether the ranker's online features were wired in; without
            them an index's ranker is not used, and the text says so. (default: ``True``)
    """
    lines = [
        f"user {rec.user_id}: index {rec.index_version}, retriever {_v(rec.model_version)}, ranker "
        f"{_v(rec.ranker_version, 'none')} ({rec.variant})",
        f"re-ranked: {_reranked(rec, ranker_features)}",
        f"fallback: yes, popularity ({rec.fallback_reason})" if rec.fallback else "fallback: no",
        f"degraded: {', '.join(rec.degraded) or 'none'}",
        f"excluded: {rec.excluded} already-seen items",
    ]
    lines += [f"{rank:3d}. item {item.item_id}  score {item.score:.4f}" for rank, item in enumerate(rec.items, 1)]
    return "\n".join(lines)


def _v(version: int | str | None, missing: str = "unknown") -> str:
    return missing if version is None else f"v{version}"


def _reranked(rec: Recommendation, ranker_features: bool) -> str:
    """Whether the ranker ordered the items and, when it did not, why (retrieval or popularity order)."""
    if rec.reranked:
        return f"yes, by ranker {_v(rec.ranker_version)} (scores are its click probabilities)"
    if rec.fallback:
        why = "popularity fallback"
    elif rec.ranker_version is None:
        why = "the index has no ranker; retrieval order"
    elif "ranker_features" in rec.degraded:
        why = "its online features failed; retrieval order"
    elif not ranker_features:
        why = "the ranker is disabled or there is no feature store; retrieval order"
    else:
        why = "retrieval order"
    return f"no ({why})"


def _published(settings: Settings) -> tuple[str | None, dict[str, Any]]:
    """The version ``CURRENT`` names and its manifest (empty when unreadable: loading then says why)."""
    version = current_version(settings)
    if version is None:
        return None, {}
    try:
        return version, json.loads((settings.indexes_dir / version / "manifest.json").read_text())
    except (OSError, ValueError):
        return version, {}


def _recent_items_fn(settings: Settings, manifest: dict[str, Any]):
    """Exclude what the Feast online store knows the user saw after the index was built.

    Only needed when curated days exist beyond the published index's day; opening the
    Feast store costs seconds, so a CLI call skips it when the index is up to date.
    """
    curated = list_partitions(settings.curated_dir)
    if not curated or (manifest.get("ds") and parse_ds(manifest["ds"]) >= curated[-1]):
        return None
    return OnlineFeatures(settings).recent_items  # opens Feast on its first read
