"""The Gowalla check-in dataset as split by LightGCN (He et al., SIGIR 2020), mapped onto the contract.

The split is two text files, ``train.txt`` and ``test.txt``, with one line per user::

    user_id item_id item_id ...

Ids are already remapped to ``0..n-1``; a line may carry a user with no items (valid: it
contributes no rows). Items are places (points of interest), so the catalog category is
``"poi"``.

:func:`read_split` parses both files into plain ``(user_id, item_id, line)`` frames for
training benchmarks; :func:`load_source` maps them onto the interactions contract for
:func:`app.land.land_source`.

The split has no timestamps, so :func:`load_source` makes them up deterministically: a
check-in is implicit feedback, recorded as ``event_type="click"`` with no rating; every
training event falls on day ``start`` and every test event on the next day, each at
``day start + k microseconds`` where ``k`` is the row's position in its file (0-based,
items in file order). Events are then unique and ordered as in the files, and a temporal
split at the second day reproduces the benchmark split exactly. A (user, item) pair
repeated within one file would be a duplicate in the benchmark too: its repeats get the
timestamp of its first occurrence, so the contract's ``duplicate_events`` check reports them.

Line numbers (the index of the mapped interactions and the ``line`` of every bad-row
record) are 1-based line numbers in ``train.txt`` for training rows and
``TEST_LINE_OFFSET + line`` (``10_000_000 + line``) for rows of ``test.txt``; parse-error
messages also name the file and its own line number. A line is one source row holding all
of a user's items, so all its interactions share its number: a line that cannot be parsed
is reported as one ``unparseable_row``, and under ``on_bad_rows="quarantine"`` a line with
a bad value (a negative id, a repeated item) is held back as a whole.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from graphrec import contract
from ingest.bad_rows import bad_row
from ingest.loading import SourceLoad, catalog_from_events

TRAIN_FILE = "train.txt"
TEST_FILE = "test.txt"
TEST_LINE_OFFSET = 10_000_000
CATEGORY = "poi"
EVENT_TYPE = "click"
SOURCE_NAME = "gowalla"
LINE_SCHEME = f"{TRAIN_FILE} (line), {TEST_FILE} ({TEST_LINE_OFFSET} + line)"

# A valid line: whitespace-separated integers that fit in int64 (at most 18 digits, so no
# overflow is possible), or nothing at all.
_VALID_LINE = re.compile(rb"[ \t\f\v]*(?:-?\d{1,18}(?:[ \t\f\v]+-?\d{1,18})*[ \t\f\v]*)?")


class GowallaFormatError(ValueError):
    """A split file has lines that are not whitespace-separated integer ids."""


@dataclasses.dataclass
class ParsedFile:
    """One split file, parsed.

    Attributes:
        path: the file.
        pairs: ``user_id, item_id, line`` (int64), one row per item, in file order.
        users: every user id that starts a valid line, items or not (int64, file order).
        errors: ``(line, text, message)`` of each line that could not be parsed; those
            lines contribute nothing to ``pairs`` or ``users``.
    """

    path: Path
    pairs: pd.DataFrame
    users: np.ndarray
    errors: list[tuple[int, str, str]]


def parse_file(path: Path) -> ParsedFile:
    """Parse one split file (``user item item ...`` per line), keeping line numbers.

    The file is read at once and converted with numpy: the 810,128 training pairs take a
    fraction of a second. Blank lines are skipped; a line with a token that is not an
    integer (or does not fit in int64) is returned in ``errors`` and nothing of it is kept.

    Args:
        path: ``train.txt`` or ``test.txt`` (any path).

    Returns:
        ParsedFile: the pairs, the users and the unparseable lines.
    """
    path = Path(path)
    lines = path.read_bytes().splitlines()
    errors: list[tuple[int, str, str]] = []
    kept: list[bytes] = []
    kept_lines: list[int] = []
    counts: list[int] = []
    for number, raw in enumerate(lines, start=1):
        if _VALID_LINE.fullmatch(raw) is None:
            text = raw.decode("utf-8", errors="replace")
            errors.append(
                (
                    number,
                    text,
                    f"{path.name} line {number}: expected whitespace-separated integer ids "
                    f"'user_id item_id ...', got {text[:80]!r}",
                )
            )
            continue
        tokens = len(raw.split())
        if tokens:
            kept.append(raw)
            kept_lines.append(number)
            counts.append(tokens)
    values = np.fromstring(b"\n".join(kept), dtype=np.int64, sep=" ") if kept else np.empty(0, np.int64)
    counts_arr = np.asarray(counts, dtype=np.int64)
    if len(values) != int(counts_arr.sum()):  # cannot happen for lines that passed _VALID_LINE
        raise GowallaFormatError(f"{path}: parsed {len(values)} ids, expected {int(counts_arr.sum())}")
    starts = np.concatenate(([0], np.cumsum(counts_arr)[:-1])).astype(np.int64) if len(counts_arr) else counts_arr
    users = values[starts]
    items_per_line = counts_arr - 1
    is_item = np.ones(len(values), dtype=bool)
    is_item[starts] = False
    pairs = pd.DataFrame(
        {
            contract.USER_ID: np.repeat(users, items_per_line),
            contract.ITEM_ID: values[is_item],
            "line": np.repeat(np.asarray(kept_lines, dtype=np.int64), items_per_line),
        }
    )
    return ParsedFile(path=path, pairs=pairs, users=users, errors=errors)


def _split_paths(path: Path) -> tuple[Path, Path]:
    """``train.txt`` and ``test.txt`` of a split directory (or of the directory of one of them)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    train, test = folder / TRAIN_FILE, folder / TEST_FILE
    missing = [str(p) for p in (train, test) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"not a LightGCN split directory (missing {', '.join(missing)}): {path}")
    return train, test


def read_split(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the train and test pairs of a split, for training and benchmarks.

    Args:
        path: the directory holding ``train.txt`` and ``test.txt`` (or one of the two files).

    Returns:
        tuple[pandas.DataFrame, pandas.DataFrame]: (train, test), each with int64 columns
        ``user_id, item_id, line`` (line = 1-based line number in its own file), in file order.

    Raises:
        FileNotFoundError: a file of the split is missing.
        GowallaFormatError: a line is not whitespace-separated integers; the message names
            the file and line numbers (use :func:`load_source` to land the good lines and
            report the bad ones).
    """
    parsed = [parse_file(p) for p in _split_paths(path)]
    errors = [message for p in parsed for _, _, message in p.errors]
    if errors:
        shown = "; ".join(errors[:10]) + ("; ..." if len(errors) > 10 else "")
        raise GowallaFormatError(f"{len(errors)} unparseable line(s) in {Path(path)}: {shown}")
    return parsed[0].pairs, parsed[1].pairs


def _event_times(pairs: pd.DataFrame, day: dt.date) -> np.ndarray:
    """``day`` 00:00 UTC + k microseconds, k = the row's position in its file, or for a
    repeated (user, item) pair the position of its first occurrence."""
    position = np.arange(len(pairs), dtype=np.int64)
    repeats = pairs.duplicated([contract.USER_ID, contract.ITEM_ID], keep="first").to_numpy()
    if repeats.any():
        first = pd.Series(position).groupby([pairs[contract.USER_ID].to_numpy(), pairs[contract.ITEM_ID].to_numpy()])
        position = first.transform("first").to_numpy()
    return np.datetime64(day.isoformat(), "us") + position.astype("timedelta64[us]")


def _interactions(pairs: pd.DataFrame, day: dt.date, line_offset: int) -> pd.DataFrame:
    stamps = pd.DatetimeIndex(_event_times(pairs, day)).tz_localize("UTC")
    return pd.DataFrame(
        {
            contract.USER_ID: pairs[contract.USER_ID].to_numpy(),
            contract.ITEM_ID: pairs[contract.ITEM_ID].to_numpy(),
            contract.EVENT_TS: stamps.array,
            contract.EVENT_TYPE: EVENT_TYPE,
            contract.RATING: np.nan,
        },
        index=pd.Index(pairs["line"].to_numpy() + line_offset),
    )


def load_source(path: Path, *, start: dt.date = dt.date(2020, 1, 1)) -> SourceLoad:
    """Map a LightGCN split onto the contract; see the module docstring for the scheme.

    Args:
        path: the directory holding ``train.txt`` and ``test.txt`` (or one of the two files).
        start: the day of the training events; test events fall on the day after.

    Returns:
        SourceLoad: interactions indexed by ``line`` (train) or ``10_000_000 + line``
        (test); unparseable lines as ``unparseable_row`` parse errors; items with category
        ``"poi"`` first seen at their first event; users from every valid line, including
        users whose line has no items.

    Raises:
        FileNotFoundError: a file of the split is missing.
    """

    train_path, test_path = _split_paths(path)
    train, test = parse_file(train_path), parse_file(test_path)
    if len(train.pairs) and int(train.pairs["line"].max()) >= TEST_LINE_OFFSET:
        raise ValueError(
            f"{train_path} has {TEST_LINE_OFFSET} lines or more: its line numbers would collide "
            f"with those of {TEST_FILE} ({LINE_SCHEME})"
        )
    next_day = start + dt.timedelta(days=1)
    interactions = pd.concat(
        [_interactions(train.pairs, start, 0), _interactions(test.pairs, next_day, TEST_LINE_OFFSET)]
    )
    errors: list[dict[str, Any]] = [
        bad_row(line + offset, "unparseable_row", None, text, message)
        for parsed, offset in ((train, 0), (test, TEST_LINE_OFFSET))
        for line, text, message in parsed.errors
    ]
    items = catalog_from_events(interactions, CATEGORY)
    users = pd.DataFrame({contract.USER_ID: np.unique(np.concatenate([train.users, test.users]))}, dtype="int64")
    return SourceLoad(
        name=SOURCE_NAME,
        path=Path(path),
        interactions=interactions,
        parse_errors=errors,
        items=items,
        users=users,
        file=LINE_SCHEME,
    )


__all__ = [
    "GowallaFormatError",
    "LINE_SCHEME",
    "ParsedFile",
    "TEST_LINE_OFFSET",
    "load_source",
    "parse_file",
    "read_split",
]
