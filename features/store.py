"""The Feast adapter: open this installation's store and register ``feature_repo/``.

The Feast *definitions* live in ``feature_repo/`` (declarative, no code paths); this
module is the thin layer between them and the running code:

* :func:`repo_config` resolves ``feature_repo/feature_store.yaml`` for the installation
  (its profile picks the registry and the stores);
* :func:`feature_store` opens the store once per process (:func:`reset_feature_store`
  forgets it, so the next call reconnects);
* :func:`load_definitions` imports the repository's objects the way ``feast apply``
  does, and :func:`apply_definitions` makes the registry match them.

The offline snapshots are written by :mod:`features.snapshots`, loaded into the online
store by :mod:`features.materialize`, and read by :mod:`features.historical` (training)
and :mod:`features.online` (serving).

Feast is imported inside the functions that use it: importing it costs seconds, and this
module is imported where no store is opened yet (the service builds its online reader at
start-up, the CLI only opens the store when it needs one).
"""

from __future__ import annotations

import importlib.util
import os
import string
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from features.snapshots import offline_table
from graphrec.settings import Settings

if TYPE_CHECKING:  # Feast is heavy; import it only where it is used.
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

RANKER_SERVICE = "ranker_features_v1"
"""The feature service the BST ranker reads, offline and online (``feature_repo/definitions.py``)."""

_STORES: dict[tuple[str, str], FeatureStore] = {}
_STORES_LOCK = threading.Lock()


def repo_config(settings: Settings) -> RepoConfig:
    """``feature_repo/feature_store.yaml`` resolved for ``settings`` as a Feast ``RepoConfig``.

    Feast's own loader expands environment variables; here ``${GRAPHREC_HOME}`` comes from
    ``settings`` first (other variables still from the environment), and ``repo_path`` is
    ``settings.feast_dir`` (the offline sources' paths are made absolute under it when
    the definitions are loaded: see :func:`load_definitions`).
    The registry path, the online and the offline store come from ``settings`` (the
    profile): the YAML file's values are the embedded ones, for the ``feast`` CLI.
    """
    from feast.repo_config import RepoConfig  # heavy: see the module docstring

    text = (settings.feature_repo / "feature_store.yaml").read_text()
    text = os.path.expandvars(string.Template(text).safe_substitute(GRAPHREC_HOME=str(settings.root)))
    raw = yaml.safe_load(text)
    # Where the registry and the stores live is the profile's business (settings): SQLite
    # and parquet files under home (embedded) or PostgreSQL and Redis (services).
    raw["registry"] = {**raw.get("registry", {}), "path": settings.feast_registry_path}
    raw["online_store"] = settings.feast_online_store
    raw["offline_store"] = settings.feast_offline_store
    config = RepoConfig(**raw)
    config.repo_path = settings.feast_dir
    return config


def feature_store(settings: Settings) -> FeatureStore:
    """The Feast store of this installation, created once per process and reused.

    Registry, online store and offline snapshots all live under ``settings.feast_dir``.
    The object is cached (per feast directory and repository) because opening it costs
    far more than a lookup: a request handler can call this on every request.
    """
    from feast import FeatureStore  # heavy: see the module docstring

    key = (str(settings.feast_dir), str(settings.feature_repo))
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            settings.feast_dir.mkdir(parents=True, exist_ok=True)
            store = FeatureStore(repo_path=str(settings.feast_dir), config=repo_config(settings))
            _STORES[key] = store
        return store


def reset_feature_store(settings: Settings) -> None:
    """Forget this process's cached store, so the next :func:`feature_store` opens a new one.

    A store keeps its online-store connection for the life of the process; after the
    online store failed (a server restarted, a file replaced), reading through a fresh
    store reconnects instead of failing forever on the old connection.
    """
    with _STORES_LOCK:
        _STORES.pop((str(settings.feast_dir), str(settings.feature_repo)), None)


def load_definitions(settings: Settings) -> list[Any]:
    """Import the repository's definition files by path and collect their Feast objects.

    Files follow ``feast apply``'s rules (every ``*.py`` but ``__init__.py`` and what
    ``.feastignore`` lists); nothing is added to ``sys.modules`` or ``sys.path``.

    A ``FileSource`` path that is relative (the repository declares them relative to the
    Feast directory) is made absolute under ``settings.feast_dir``, so the registry holds
    absolute paths: the DuckDB offline store reads a path as it is, relative to the
    working directory of whichever process reads it (a training task, ``materialize``).
    In the services profile each feature view reads its PostgreSQL table instead
    (:func:`_postgres_sources`).
    """
    from feast import Entity, FeatureService, FeatureView, Project  # heavy: see the module docstring
    from feast.data_source import DataSource
    from feast.infra.offline_stores.file_source import FileSource
    from feast.repo_operations import get_repo_files

    kinds = (Project, Entity, DataSource, FeatureView, FeatureService)
    objects: list[Any] = []
    for path in get_repo_files(settings.feature_repo.resolve()):
        spec = importlib.util.spec_from_file_location(f"graphrec_feature_repo.{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import feature definitions from {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for value in vars(module).values():
            if isinstance(value, kinds) and not any(value is seen for seen in objects):
                objects.append(value)
    sources = [o for o in objects if isinstance(o, DataSource)]
    sources += [o.batch_source for o in objects if isinstance(o, FeatureView)]
    for source in sources:
        if isinstance(source, FileSource) and "://" not in source.path and not Path(source.path).is_absolute():
            source.file_options.uri = str(settings.feast_dir / source.path)
    return _postgres_sources(objects) if settings.services else objects


def _postgres_sources(objects: list[Any]) -> list[Any]:
    """The same objects with each feature view's source replaced by its PostgreSQL table.

    The tables (:func:`features.snapshots.offline_table`) hold the same rows as the
    parquet snapshots (:func:`features.snapshots.build_features` writes both); each new
    source keeps the file source's name, timestamp field and description. A view refers to its source from itself, its
    projection and every feature service's projection of it: all are replaced.
    """
    from feast import FeatureService, FeatureView  # heavy: see the module docstring
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource

    replaced: dict[int, Any] = {}
    for view in (o for o in objects if isinstance(o, FeatureView)):
        old = view.batch_source
        new = PostgreSQLSource(
            name=old.name,
            table=offline_table(view.name),
            timestamp_field=old.timestamp_field,
            description=old.description,
            tags=old.tags,
            owner=old.owner,
        )
        replaced[id(old)] = new
        view.batch_source = view.data_source = view.projection.batch_source = new
    for service in (o for o in objects if isinstance(o, FeatureService)):
        for projection in service.feature_view_projections:
            projection.batch_source = replaced.get(id(projection.batch_source), projection.batch_source)
    return [replaced.get(id(o), o) for o in objects]


def apply_definitions(settings: Settings, store: FeatureStore | None = None) -> dict[str, list[str]]:
    """Make the registry match ``feature_repo/``, like ``feast apply``; a no-op when it does.

    Objects that changed or are new are applied; objects of the project that are no
    longer defined are deleted (with their online tables).

    Returns:
        dict: ``{"applied": [names], "deleted": [names]}``.
    """
    from feast import Entity, FeatureService, FeatureView, Project  # heavy: see the module docstring
    from feast.data_source import DataSource
    from feast.diff.property_diff import TransitionType
    from feast.diff.registry_diff import diff_between
    from feast.feature_view import DUMMY_ENTITY_NAME
    from feast.repo_contents import RepoContents

    store = store or feature_store(settings)
    objects = load_definitions(settings)

    def of(kind):
        return [o for o in objects if isinstance(o, kind)]

    repo = RepoContents(
        projects=of(Project), data_sources=of(DataSource), feature_views=of(FeatureView),
        on_demand_feature_views=[], stream_feature_views=[], label_views=[],
        entities=of(Entity), feature_services=of(FeatureService), permissions=[],
    )  # fmt: skip
    # Feast's own diff (what `feast plan` prints) decides; unchanged objects are not rewritten.
    diffs = diff_between(store.registry, store.project, repo).feast_object_diffs
    to_apply: list[Any] = [
        d.new_feast_object
        for d in diffs
        if d.transition_type == TransitionType.CREATE
        or (d.transition_type == TransitionType.UPDATE and not _only_source_timestamps(d))
    ]
    to_delete: list[Any] = [
        d.current_feast_object
        for d in diffs
        if d.transition_type == TransitionType.DELETE and d.name != DUMMY_ENTITY_NAME  # Feast's own placeholder
    ]
    if to_apply or to_delete:
        store.apply(to_apply, objects_to_delete=to_delete, partial=False)
    return {"applied": sorted(o.name for o in to_apply), "deleted": sorted(o.name for o in to_delete)}


def _only_source_timestamps(diff) -> bool:
    """Whether an UPDATE differs only in the embedded data source's bookkeeping timestamps.

    A feature view's spec embeds its batch source *with* ``meta.created_timestamp``, which
    is set when the definitions are imported; Feast's diff therefore reports every view
    as updated on every apply. Such a diff is not a change of definition.
    """
    for prop in diff.feast_object_property_diffs:
        if prop.property_name not in ("batch_source", "stream_source"):
            return False
        existing, declared = type(prop.val_existing)(), type(prop.val_declared)()
        existing.CopyFrom(prop.val_existing)
        declared.CopyFrom(prop.val_declared)
        existing.ClearField("meta")
        declared.ClearField("meta")
        if existing != declared:
            return False
    return True
