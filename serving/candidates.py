"""One bundle's candidates for one user: retrieval, the popularity fallback and ranker scores.

Pure functions of a loaded :class:`~serving.bundle.Bundle` (no pointers, no sources that
can fail): :func:`retrieve_unseen` searches the FAISS index for a known user and keeps
the best ``k`` items the user has not seen, :func:`popular_unseen` does the same over the
popularity list for an unknown user, and :func:`ranker_probabilities` scores (user, item)
rows with the bundle's BST ranker from their online features plus the retrieval score.
:class:`serving.recommender.Recommender` decides which of them answer a request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from features.ranker_columns import ITEM_ID, RETRIEVAL_SCORE, CandidateFeatures
from serving.bundle import Bundle
from serving.index import search
from serving.schemas import ScoredItem

#: ``ranker_features_fn(user_id, item_ids) -> features`` of one row per item, in order:
#: either a frame of :data:`features.ranker_columns.FRAME_COLUMNS` (without
#: ``retrieval_score``), or the same values as a
#: :class:`features.ranker_columns.CandidateFeatures` (the service's online reader),
#: which is encoded without pandas.
RankerFeaturesFn = Callable[[int, list[int]], pd.DataFrame | CandidateFeatures]


def retrieve_unseen(bundle: Bundle, row: int, exclude: np.ndarray, k: int) -> tuple[list[int], list[float], int]:
    """FAISS top candidates for a known user, minus excluded items, best ``k`` kept (:func:`take_unseen`).

    Args:
        bundle (Bundle): the bundle answering.
        row (int): the user's row in ``bundle.user_emb``.
        exclude (np.ndarray): item ids the user already saw.
        k (int): items wanted.
    """
    fetch = min(k + len(exclude), int(bundle.index.ntotal))
    scores, positions = search(bundle.index, bundle.user_emb[row], fetch)
    valid = positions[0] >= 0
    ids = bundle.item_ids[positions[0][valid]]
    return take_unseen(ids.tolist(), scores[0][valid].tolist(), exclude, k)


def popular_unseen(bundle: Bundle, exclude: np.ndarray, k: int) -> tuple[list[int], list[float], int]:
    """The most popular items the user has not seen (cold-start fallback, :func:`take_unseen`).

    Scores fall linearly from 1.0 for the most popular item.
    """
    n = len(bundle.popular)
    head = min(n, k + len(exclude))  # the best k unseen lie within the first k + |exclude|
    scores = (1.0 - np.arange(head) / max(n, 1)).tolist()
    return take_unseen(bundle.popular[:head].tolist(), scores, exclude, k)


def take_unseen(ids: list[int], scores: list[float], exclude: np.ndarray, k: int) -> tuple[list[int], list[float], int]:
    """Walk ranked candidates, skipping excluded and repeated ids, until ``k`` are kept.

    Returns:
        tuple[list[int], list[float], int]: the kept ids and their scores, and how many
        candidates were skipped because they were excluded.
    """
    banned = set(exclude.tolist())
    kept: list[int] = []
    kept_scores: list[float] = []
    taken: set[int] = set()
    skipped = 0
    for item_id, score in zip(ids, scores):
        if len(kept) == k:
            break
        if item_id in banned:
            skipped += 1
        elif item_id not in taken:
            taken.add(item_id)
            kept.append(item_id)
            kept_scores.append(float(score))
    return kept, kept_scores, skipped


def scored(ids: list[int], scores: list[float], skipped: int) -> tuple[list[ScoredItem], int]:
    """The response items of :func:`take_unseen`'s answer, and its skipped count."""
    return [ScoredItem(item_id=i, score=s) for i, s in zip(ids, scores)], skipped


def ranker_probabilities(
    bundle: Bundle,
    features_fn: RankerFeaturesFn,
    user_id: int,
    item_ids: list[int],
    retrieval_scores: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """Ranker probabilities of (user, item) rows: online features + retrieval score -> BST.

    Args:
        bundle (Bundle): a bundle with a ranker.
        features_fn (RankerFeaturesFn): reads the rows' online features.
        user_id (int): external user id.
        item_ids (list[int]): candidate item ids.
        retrieval_scores (Sequence[float]): the retriever's score of each candidate, in order.

    Returns:
        np.ndarray: float32 click probabilities, one per item, in input order.

    Raises:
        ValueError: if the features do not come back one row per item, in order, or
            the ranker returns non-finite probabilities (or is in training mode).
    """
    # lazy: torch, loaded only for bundles with a ranker (retrieval-only serving stays light)
    from training.bst_encoding import encode, encode_candidates
    from training.bst_scorer import RequestScorer

    model, vocab, _ = bundle.ranker
    item_ids = [int(i) for i in item_ids]
    scores = np.asarray(retrieval_scores, dtype=np.float64).reshape(-1)
    if len(scores) != len(item_ids):
        raise ValueError(f"{len(scores)} retrieval scores for {len(item_ids)} items")
    features = features_fn(int(user_id), item_ids)
    scorer = bundle.ranker_scorer if bundle.ranker_scorer is not None else RequestScorer(model, trace=False)
    if isinstance(features, CandidateFeatures):  # one history for all rows: the fast path
        if features.user_id != int(user_id) or features.item_ids.tolist() != item_ids:
            raise ValueError("ranker features must come back for the user's candidates, in candidate order")
        probabilities = scorer.shared(encode_candidates(features, scores, vocab, model.seq_len))
    else:
        if len(features) != len(item_ids) or features[ITEM_ID].astype(np.int64).tolist() != item_ids:
            raise ValueError("ranker features must come back one row per candidate, in candidate order")
        probabilities = scorer(encode(features.assign(**{RETRIEVAL_SCORE: scores}), vocab, model.seq_len))
    if probabilities.shape != (len(item_ids),) or not np.isfinite(probabilities).all():
        raise ValueError("the ranker returned non-finite or misshapen probabilities")
    return probabilities
