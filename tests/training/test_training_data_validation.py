"""Unit and data tests of training.data.validation_split: the early-stopping split."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from training_sim import TINY, curated_world, events

from graphrec import contract
from training.data import load_window, temporal_split, validation_split

KEY = [contract.USER_ID, contract.ITEM_ID, contract.EVENT_TS]


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    settings = curated_world(tmp_path_factory.mktemp("validation"), TINY)
    window = load_window(settings, TINY.day(TINY.days), 14)
    return temporal_split(window.interactions, 1, end=window.end)[0]


def _keys(frame: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_frame(frame[KEY])


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
@pytest.mark.parametrize("seed", [0, 42])
def test_parts_are_disjoint_and_cover_the_input(train, fraction, seed):
    fit, validation = validation_split(train, fraction, seed)
    assert list(fit.columns) == list(validation.columns) == list(train.columns)
    assert len(fit) + len(validation) == len(train)
    assert not _keys(fit).isin(_keys(validation)).any()
    union = pd.concat([fit, validation]).sort_values([*KEY, contract.EVENT_TYPE]).reset_index(drop=True)
    pd.testing.assert_frame_equal(union, train.sort_values([*KEY, contract.EVENT_TYPE]).reset_index(drop=True))


@pytest.mark.parametrize("fraction", [0.1, 0.5])
def test_validation_is_each_users_latest_and_every_user_keeps_fitevents(train, fraction):
    fit, validation = validation_split(train, fraction, 42)
    counts = train.groupby(contract.USER_ID).size()
    per_user = validation.groupby(contract.USER_ID).size()
    assert set(fit[contract.USER_ID]) == set(train[contract.USER_ID])
    assert set(per_user.index) <= set(counts[counts >= 2].index)
    for user, n in per_user.items():
        assert n <= min(math.ceil(fraction * counts[user]), counts[user] - 1)
    # Nothing in a user's fit part is newer than their validation part.
    newest_fit = fit.groupby(contract.USER_ID)[contract.EVENT_TS].max()
    oldest_val = validation.groupby(contract.USER_ID)[contract.EVENT_TS].min()
    assert (newest_fit.loc[oldest_val.index] <= oldest_val).all()
    assert len(validation) >= 0.9 * (np.minimum(np.ceil(fraction * counts), counts - 1)).sum()


def test_deterministic_and_independent_of_row_order(train):
    fit, validation = validation_split(train, 0.2, 7)
    again_fit, again_validation = validation_split(train.sample(frac=1.0, random_state=3), 0.2, 7)
    assert set(_keys(validation)) == set(_keys(again_validation))
    assert set(_keys(fit)) == set(_keys(again_fit))


def test_ties_are_broken_by_the_seed_and_duplicates_never_split():
    rows = [(1, item, "2025-01-01T00:00:00") for item in range(10)]
    rows += [(2, 5, "2025-01-01T00:00:00"), (2, 5, "2025-01-02T00:00:00"), (2, 5, "2025-01-02T00:00:00")]
    rows += [(3, 1, "2025-01-01T00:00:00")]
    frame = events(rows)
    chosen = set()
    for seed in range(8):
        fit, validation = validation_split(frame, 0.2, seed)
        assert validation_split(frame, 0.2, seed)[1].equals(validation)
        assert (validation[contract.USER_ID] == 1).sum() == 2  # ceil(0.2 * 10) among ten ties
        chosen.add(tuple(sorted(validation.loc[validation[contract.USER_ID] == 1, contract.ITEM_ID])))
        # User 2's latest two events are identical: k = 1 would split them, so both stay in fit.
        assert 2 not in set(validation[contract.USER_ID])
        assert (fit[contract.USER_ID] == 3).sum() == 1  # one event: always fit
    assert len(chosen) > 1


def test_fraction_zero_and_empty_input_validate_nothing(train):
    fit, validation = validation_split(train, 0.0, 42)
    assert len(fit) == len(train) and validation.empty
    fit, validation = validation_split(train.iloc[:0], 0.1, 42)
    assert fit.empty and validation.empty and list(validation.columns) == list(train.columns)


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_fraction_out_of_range_is_refused(train, fraction):
    with pytest.raises(ValueError, match="fraction"):
        validation_split(train, fraction, 42)
