"""Batch serving (monitoring.offline_serving): exact top-k without seen items, fallbacks for
unknown users, deterministic ties, and the arrays of a published bundle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from drift_frames import toy_model

from graphrec import contract
from monitoring.offline_serving import FALLBACK, RANK, SCORE, ServingModel, serve_batch
from serving.bundle import Bundle
from serving.history import SeenSets
from serving.index import build_index
from training.ids import RowLookup


@pytest.mark.parametrize("n_items, k", [(1000, 10), (37, 5), (1000, 1)])
def test_serve_batch_matches_brute_force_top_k_without_seen_items(n_items, k):
    model = toy_model(n_items=n_items)
    served = serve_batch(model, model.user_ids, k=k, batch_size=16)
    assert not served[FALLBACK].any()
    for row, user in enumerate(model.user_ids):
        scores = model.item_emb @ model.user_emb[row]
        seen = np.isin(model.item_ids, model.seen.items_for(user))
        scores[seen] = -np.inf
        top = np.argsort(-scores, kind="stable")[:k]
        got = served[served[contract.USER_ID] == user]
        assert got[RANK].tolist() == list(range(1, k + 1))
        np.testing.assert_array_equal(got[contract.ITEM_ID].to_numpy(), model.item_ids[top])
        np.testing.assert_allclose(got[SCORE].to_numpy(), scores[top], rtol=1e-5)
        assert not np.isin(got[contract.ITEM_ID], model.seen.items_for(user)).any()


def test_a_user_who_saw_almost_everything_gets_the_rest():
    model = toy_model(n_users=1, n_items=30, seen_per_user=0)
    seen_items = np.sort(model.item_ids[:27])
    model = ServingModel(
        model.user_ids,
        model.user_emb,
        model.item_ids,
        model.item_emb,
        SeenSets(model.user_ids, np.array([0, 27]), seen_items),
        model.popular,
    )
    served = serve_batch(model, model.user_ids, k=10)
    assert sorted(served[contract.ITEM_ID]) == sorted(model.item_ids[27:])
    assert served[RANK].tolist() == [1, 2, 3]


def test_unknown_users_get_the_most_popular_unseen_items_as_fallback():
    model = toy_model()
    unknown, other = 999_999, 888_888
    seen = SeenSets(np.array([other, unknown]), np.array([0, 0, 2]), np.sort(model.popular[[0, 2]]))
    model = ServingModel(model.user_ids, model.user_emb, model.item_ids, model.item_emb, seen, model.popular)
    served = serve_batch(model, [unknown, int(model.user_ids[0]), unknown, other], k=5)
    assert served[contract.USER_ID].drop_duplicates().tolist() == [unknown, int(model.user_ids[0]), other]
    fallback = served[served[contract.USER_ID] == unknown]
    assert fallback[FALLBACK].all() and fallback[SCORE].isna().all()
    assert fallback[contract.ITEM_ID].tolist() == model.popular[[1, 3, 4, 5, 6]].tolist()
    assert served.loc[served[contract.USER_ID] == other, contract.ITEM_ID].tolist() == model.popular[:5].tolist()
    assert not served.loc[served[contract.USER_ID] == model.user_ids[0], FALLBACK].any()


@pytest.mark.parametrize("k", [10, 50])
def test_equal_scores_are_ranked_by_item_row_and_do_not_depend_on_the_batch(k):
    model = toy_model(n_users=8, n_items=50, seen_per_user=0)
    item_emb = model.item_emb.copy()
    item_emb[[5, 17, 33]] = item_emb[40]  # four items with the same vector: tied for every user
    tied = ServingModel(model.user_ids, model.user_emb, model.item_ids, item_emb, model.seen, model.popular)
    served = serve_batch(tied, tied.user_ids, k=k, batch_size=3)
    other = serve_batch(tied, tied.user_ids, k=k, batch_size=8)
    # The same lists in the same order; the float32 scores may differ in their last bits,
    # because BLAS picks its kernel by the matrix's shape (seen on AVX-512 machines).
    pd.testing.assert_frame_equal(served.drop(columns=[SCORE]), other.drop(columns=[SCORE]))
    np.testing.assert_allclose(served[SCORE], other[SCORE], rtol=1e-5, atol=1e-6)
    rows = RowLookup.of(tied.item_ids)
    for _, got in served.groupby(contract.USER_ID):
        listed = [int(row) for row in rows.rows_of(got[contract.ITEM_ID].to_numpy()) if row in (5, 17, 33, 40)]
        assert listed == sorted(listed)  # equal scores: by item row
        assert len(listed) == 4 or k < 50
    assert len(served) == 8 * k


def test_serving_model_from_a_bundle_reconstructs_item_vectors_from_the_index(tmp_path):
    toy = toy_model()
    bundle = Bundle(
        version="v0001",
        path=tmp_path,
        manifest={},
        index=build_index(toy.item_emb),
        item_ids=toy.item_ids,
        user_ids=toy.user_ids,
        user_emb=toy.user_emb,
        seen=toy.seen,
        popular=toy.popular,
        user_lookup=RowLookup.of(toy.user_ids),
    )
    model = ServingModel.from_bundle(bundle)
    np.testing.assert_array_equal(model.item_emb, toy.item_emb)
    pd.testing.assert_frame_equal(serve_batch(model, toy.user_ids[:5]), serve_batch(toy, toy.user_ids[:5]))
