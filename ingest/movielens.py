"""MovieLens 100K mapped onto the interactions contract (landed by :mod:`ingest.loading`).

Reads the official GroupLens archive (``ml-100k.zip``) or its extracted directory from a
local path, or downloads the archive when no path is given.
"""

from __future__ import annotations

import io
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from graphrec import contract
from ingest.bad_rows import bad_row
from ingest.loading import SourceLoad

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
GENRES = (
    "unknown",
    "action",
    "adventure",
    "animation",
    "childrens",
    "comedy",
    "crime",
    "documentary",
    "drama",
    "fantasy",
    "film-noir",
    "horror",
    "musical",
    "mystery",
    "romance",
    "sci-fi",
    "thriller",
    "war",
    "western",
)


def _opener(source: Path) -> Callable[[str], bytes]:
    """Return a function reading a member file (``u.data``...) from a directory or a zip archive."""
    if source.is_dir():
        return lambda name: (source / name).read_bytes()
    if zipfile.is_zipfile(source):
        archive = zipfile.ZipFile(source)
        names = {Path(n).name: n for n in archive.namelist()}
        return lambda name: archive.read(names[name])
    raise ValueError(f"{source} is neither an ml-100k directory nor a zip archive")


def download(dest: Path, url: str = ML100K_URL) -> Path:
    """Download the official archive to ``dest`` (a file path) unless it is already there."""
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - fixed https URL
            dest.write_bytes(response.read())
    return dest


def _parse_ratings(raw: bytes) -> tuple[pd.DataFrame, list[dict]]:
    """Parse ``u.data`` (tab-separated ``user item rating unix_ts``) keeping line numbers.

    Lines that do not have four integer fields are returned as parse errors, not dropped.
    """

    table = pd.read_csv(
        io.BytesIO(raw), sep="\t", names=["user_id", "item_id", "rating", "ts"], dtype=str, keep_default_na=False
    )
    table.index = pd.RangeIndex(1, len(table) + 1, name="line")
    numbers = table.apply(pd.to_numeric, errors="coerce")
    bad = numbers.isna().any(axis=1) | (numbers[["user_id", "item_id", "ts"]] % 1 != 0).any(axis=1)
    errors = [
        bad_row(line, "unparseable_row", None, "\t".join(table.loc[line]), "expected 4 numeric tab-separated fields")
        for line in table.index[bad]
    ]
    return numbers[~bad], errors


def load_source(source: Path) -> SourceLoad:
    """Map MovieLens 100K onto the contract (index = line number in ``u.data``).

    Ratings become ``event_type="rating"`` events; each movie's category is its first
    genre flag; its first-seen time is its first rating.
    """
    read = _opener(Path(source))
    ratings, errors = _parse_ratings(read("u.data"))
    interactions = pd.DataFrame(
        {
            contract.USER_ID: ratings["user_id"].astype("int64"),
            contract.ITEM_ID: ratings["item_id"].astype("int64"),
            contract.EVENT_TS: pd.to_datetime(ratings["ts"].astype("int64"), unit="s", utc=True).astype(
                "datetime64[us, UTC]"
            ),
            contract.EVENT_TYPE: "rating",
            contract.RATING: ratings["rating"].astype("float64"),
        },
        index=ratings.index,
    )
    item_cols = ["item_id", "title", "release", "video_release", "url", *GENRES]
    raw_items = pd.read_csv(io.BytesIO(read("u.item")), sep="|", names=item_cols, encoding="latin-1", header=None)
    flags = raw_items[list(GENRES)].to_numpy()
    primary = [GENRES[row.argmax()] if row.any() else "unknown" for row in flags]
    first_seen = interactions.groupby(contract.ITEM_ID)[contract.EVENT_TS].min()
    items = pd.DataFrame({contract.ITEM_ID: raw_items["item_id"].astype("int64"), contract.CATEGORY: primary})
    items[contract.FIRST_SEEN_TS] = items[contract.ITEM_ID].map(first_seen)
    items = items.dropna(subset=[contract.FIRST_SEEN_TS]).reset_index(drop=True)
    users = pd.read_csv(io.BytesIO(read("u.user")), sep="|", names=["user_id", "age", "gender", "occupation", "zip"])
    return SourceLoad(
        name="movielens-100k",
        path=Path(source),
        interactions=interactions,
        parse_errors=errors,
        items=items,
        users=users[["user_id"]].astype("int64"),
        file="u.data",
    )


def load(source: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Load (interactions, items, users) frames in the contract's schema."""
    loaded = load_source(source)
    return loaded.interactions.reset_index(drop=True), loaded.items, loaded.users


def resolve(source: Path | None, cache_dir: Path) -> Path:
    """The local path to read: ``source``, or the archive downloaded into ``cache_dir``."""
    return Path(source) if source is not None else download(cache_dir / "ml-100k.zip")
