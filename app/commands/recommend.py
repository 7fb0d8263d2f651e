"""``graphrec recommend``: one user's top-k from the published index, as the service answers it."""

from __future__ import annotations

import argparse
import json
import sys

from features.online import OnlineFeatures
from graphrec.lake import list_partitions, parse_ds
from graphrec.settings import Settings, get_settings
from serving.recommender import Recommender
from serving.swap import NoPublishedIndex
from serving.versions import current_version


def cmd_recommend(args: argparse.Namespace) -> int:
    if not 1 <= args.k <= 1000:
        print("error: --k must be between 1 and 1000", file=sys.stderr)
        return 2
    settings = get_settings()
    ranker_features = None
    if settings.ranker.enabled and settings.feast_dir.exists():
        ranker_features = OnlineFeatures(settings)  # opens Feast on its first read
    recommender = Recommender(
        settings,
        recent_items_fn=_recent_items_fn(settings),
        ranker_features_fn=ranker_features,
        rerank_candidates=settings.ranker.candidates,
    )
    try:
        rec = recommender.recommend(args.user_id, args.k)
    except NoPublishedIndex as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    payload = rec.model_dump() if hasattr(rec, "model_dump") else rec.__dict__
    if args.json:
        print(json.dumps(payload, indent=2, default=str))
    else:
        flag = f" (fallback: {payload.get('fallback_reason')})" if payload.get("fallback") else ""
        print(f"user {args.user_id}, index {payload['index_version']}, model v{payload['model_version']}{flag}")
        for rank, item in enumerate(payload["items"], 1):
            print(f"{rank:3d}. item {item['item_id']}  score {item['score']:.4f}")
    return 0


def _recent_items_fn(settings: Settings):
    """Exclude what the Feast online store knows the user saw after the index was built.

    Only needed when curated days exist beyond the published index's day; opening the
    Feast store costs seconds, so a CLI call skips it when the index is up to date.
    """
    version = current_version(settings)
    curated = list_partitions(settings.curated_dir)
    if version and curated:
        manifest = json.loads((settings.indexes_dir / version / "manifest.json").read_text())
        if manifest.get("ds") and parse_ds(manifest["ds"]) >= curated[-1]:
            return None
    return OnlineFeatures(settings).recent_items  # opens Feast on its first read
