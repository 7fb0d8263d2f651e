"""Publication interrupted at every step leaves the previous version serving.

Each case injects an exception where one step of :func:`serving.publish.publish_embeddings`
happens (writing a file, verifying, re-loading, renaming, switching the pointer...) by
wrapping the function that performs it. Afterwards the recommender that was serving and a
fresh one both give exactly the answers they gave before, nothing half-written is left
behind, and the next publication gets the next free number.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from serving import bundle, bundle_writer, index_check, layout, publish, versions
from serving import index as index_module
from serving.publish import publish_embeddings
from serving.recommender import Recommender
from serving.versions import current_version, list_versions, verify_version

USERS = (0, 5, 17, 42, 99, 105, 119, 10_000)  # known users, users with history only, a stranger


class Injected(Exception):
    """The failure injected into one publication step."""


def _failing(original: Callable, *, when: Callable[..., bool] = lambda *a, **k: True, nth: int = 1) -> Callable:
    """``original``, except that its ``nth`` call for which ``when(*args)`` holds raises :class:`Injected`."""
    calls = 0

    def wrapper(*args, **kwargs):
        nonlocal calls
        if when(*args, **kwargs):
            calls += 1
            if calls == nth:
                raise Injected(f"{getattr(original, '__name__', original)} interrupted")
        return original(*args, **kwargs)

    return wrapper


def _named(name: str) -> Callable[..., bool]:
    return lambda path, *a, **k: Path(path).name == name


def _fail(target: object, attr: str, **kwargs) -> Callable[[pytest.MonkeyPatch], None]:
    return lambda mp: mp.setattr(target, attr, _failing(getattr(target, attr), **kwargs))


def _fake_checksum_mismatch(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(layout, "checksum_problems", lambda path, manifest=None: [f"{layout.INDEX_FILE}: sha256 mismatch"])


STEPS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    **{
        f"write-{name}": _fail(bundle_writer, "write_file", when=_named(name))
        for name in layout.DATA_FILES
        if name != layout.INDEX_FILE
    },
    "build-index": _fail(index_module, "build_index"),
    "write-index": _fail(index_module, "save_index"),
    "fsync-index": _fail(bundle_writer, "fsync_file", when=_named(layout.INDEX_FILE)),
    "write-manifest": _fail(bundle_writer, "atomic_write_json"),
    "checksum-verification": _fake_checksum_mismatch,
    "reload": _fail(bundle, "load_bundle"),
    "recall-check": _fail(index_check, "recall_against_exact"),
    "next-version-number": _fail(versions, "next_version"),
    "final-manifest": _fail(publish, "atomic_write_json"),
    "rename-into-version": _fail(
        os, "rename", when=lambda src, dst, *a, **k: Path(src).name.startswith(layout.TMP_PREFIX)
    ),
    "fsync-indexes-dir": _fail(bundle_writer, "fsync_dir"),
    "pointer-before-replace": _fail(layout, "write_pointer"),
    "pointer-during-replace": _fail(
        os, "replace", when=lambda src, dst, *a, **k: Path(dst).name == layout.POINTER_FILE
    ),
}


def _publish(settings, emb, interactions, popularity, **kwargs):
    return publish_embeddings(
        settings, emb, ds="2025-01-04", seen=interactions[["user_id", "item_id"]], popularity=popularity, **kwargs
    )


def _answers(recommender: Recommender) -> list[dict]:
    return [recommender.recommend(user, 10).model_dump() for user in USERS]


def _snapshot(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def _leftovers(settings) -> list[str]:
    """Hidden entries besides the lock file: temporary build dirs, pointer temp files, trash."""
    return sorted(
        p.name for p in settings.indexes_dir.iterdir() if p.name.startswith(".") and p.name != layout.LOCK_FILE
    )


@pytest.mark.parametrize("step", list(STEPS))
def test_publication_interrupted_at_each_step_leaves_the_previous_version_serving(
    settings, make_embeddings, interactions, popularity, step
):
    _publish(settings, make_embeddings(seed=0, model_version=1), interactions, popularity)
    serving = Recommender(settings)
    before = _answers(serving)
    assert {a["index_version"] for a in before} == {"v0001"}
    pointer = (settings.indexes_dir / layout.POINTER_FILE).read_bytes()
    files = _snapshot(settings.indexes_dir / "v0001")

    with pytest.MonkeyPatch.context() as mp:
        STEPS[step](mp)
        expected = (
            (layout.BundleError, "failed verification")
            if step == "checksum-verification"
            else (Injected, "interrupted")
        )
        with pytest.raises(expected[0], match=expected[1]):
            _publish(settings, make_embeddings(seed=1, model_version=2), interactions, popularity)

    assert (settings.indexes_dir / layout.POINTER_FILE).read_bytes() == pointer
    assert [v["index_version"] for v in list_versions(settings)] == ["v0001"]
    assert _snapshot(settings.indexes_dir / "v0001") == files
    assert _leftovers(settings) == []  # no .tmp-* build dir, no pointer temp file, no half-removed version
    assert _answers(serving) == before
    assert _answers(Recommender(settings)) == before

    out = _publish(settings, make_embeddings(seed=2, model_version=3), interactions, popularity)
    assert out.index_version == "v0002" and current_version(settings) == "v0002"
    assert verify_version(settings.indexes_dir / "v0002")
    assert {a["index_version"] for a in _answers(serving)} == {"v0002"}


def test_a_failure_while_pruning_does_not_undo_the_publication(settings, make_embeddings, interactions, popularity):
    settings = settings.updated({"index.keep_versions": 1})
    _publish(settings, make_embeddings(seed=0), interactions, popularity)
    serving = Recommender(settings)
    serving.recommend(0, 5)
    with pytest.MonkeyPatch.context() as mp:
        _fail(versions, "prune")(mp)
        out = _publish(settings, make_embeddings(seed=1, model_version=2), interactions, popularity)
    assert out.index_version == "v0002" and current_version(settings) == "v0002"
    assert [v["index_version"] for v in list_versions(settings)] == ["v0001", "v0002"]  # not pruned this time
    assert _leftovers(settings) == []
    expected = _answers(Recommender(settings))
    assert {a["index_version"] for a in expected} == {"v0002"}
    assert _answers(serving) == expected
    # the next publication prunes what this one could not
    assert _publish(settings, make_embeddings(seed=2), interactions, popularity).index_version == "v0003"
    assert [v["index_version"] for v in list_versions(settings)] == ["v0003"]


def test_an_unactivated_version_is_written_but_not_served(settings, make_embeddings, interactions, popularity):
    _publish(settings, make_embeddings(seed=0), interactions, popularity)
    serving = Recommender(settings)
    before = _answers(serving)
    out = _publish(settings, make_embeddings(seed=1, model_version=2), interactions, popularity, activate=False)
    assert out.index_version == "v0002" and out.activated is False
    assert current_version(settings) == "v0001"
    assert verify_version(settings.indexes_dir / "v0002")
    assert layout.read_manifest(settings.indexes_dir / "v0002")["index_version"] == "v0002"
    assert _answers(serving) == before and _answers(Recommender(settings)) == before
    assert [(v["index_version"], v["current"]) for v in list_versions(settings)] == [("v0001", True), ("v0002", False)]


@pytest.mark.parametrize("target", ["pointer", "rename", "recall"])
def test_an_interrupt_is_cleaned_up_like_an_error(settings, make_embeddings, interactions, popularity, target):
    """``KeyboardInterrupt`` (a ``BaseException``) takes the same clean-up path."""
    _publish(settings, make_embeddings(seed=0), interactions, popularity)
    before = _answers(Recommender(settings))

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        if target == "pointer":
            mp.setattr(layout, "write_pointer", interrupt)
        elif target == "rename":
            mp.setattr(os, "rename", interrupt)
        else:
            mp.setattr(index_check, "recall_against_exact", interrupt)
        with pytest.raises(KeyboardInterrupt):
            _publish(settings, make_embeddings(seed=1), interactions, popularity)
    assert current_version(settings) == "v0001" and _leftovers(settings) == []
    assert [v["index_version"] for v in list_versions(settings)] == ["v0001"]
    assert _answers(Recommender(settings)) == before
