"""The MLflow adapter: tracking setup, model logging, registry versions and aliases.

Embedded default: tracking and registry in SQLite under ``settings.mlflow_dir`` and
artifacts under ``settings.artifacts_dir`` (the experiment is created with that
artifact location, so nothing lands in ``./mlruns``). With ``GRAPHREC_MLFLOW__TRACKING_URI``
pointing at an MLflow server, the server decides where artifacts go.

The experiment carries a description (``mlflow.note.content``, :func:`experiment_description`:
what its runs are and which metrics matter) and ``mlflow.experimentKind =
custom_model_development``. MLflow 3.17's UI decides between its GenAI (traces) and
machine-learning (runs) views with the sidebar's workflow switch, which a browser remembers
(or ``?workflowType=machine_learning`` in the URL); UIs that read the experiment's kind
instead open its runs.

A registered model is created once, the first time (:func:`create_version`), so that no
night logs MLflow's "already exists" message. Training runs are opened by
:func:`training.runs.training_run`.

A retriever version is a pyfunc model (:class:`training.pyfunc_model.EmbeddingRetriever`)
whose only artifact is the ``embeddings/`` directory of a
:class:`~training.embeddings.ModelEmbeddings` (for the trained kinds with their layer-0
embeddings, ``base_embeddings.npz``, which the next warm start reads with
:func:`load_warm_start_embeddings`). Versions are addressed by number or by alias
(``challenger``, ``champion``); registry stages are deprecated and unused.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from graphrec.settings import Settings
from training.embeddings import ModelEmbeddings

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_NAME_IN_RUN = "retriever"

#: The experiment's description, shown above its runs (Markdown).
NOTE_TAG = "mlflow.note.content"
#: What the MLflow UI takes the experiment for; graphrec's runs train models.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
CUSTOM_MODEL_DEVELOPMENT = "custom_model_development"

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("long", "user_id")]),
    outputs=Schema(
        [ColSpec("long", "user_id"), ColSpec("long", "rank"), ColSpec("long", "item_id"), ColSpec("float", "score")]
    ),
    params=ParamSchema([ParamSpec("k", "long", 20)]),
)


def _is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def experiment_description(settings: Settings) -> str:
    """The experiment's description: what its runs are and which numbers to read (Markdown)."""
    retriever, ranker = settings.mlflow.retriever_model_name, settings.mlflow.ranker_model_name
    k, days = settings.ranker.k, settings.training.holdout_days
    holdout = "the window's last day" if days == 1 else f"the window's last {days} days"
    return f"""Training runs of graphrec's nightly pipeline (Airflow DAG `graphrec_nightly`): one retriever and one
ranker run a night, more on drift-triggered retrains.

* `retriever-<kind>-<ds>-<reason>`: the retriever (LightGCN by default; MF, GF-CF or popularity).
  Judge it by `recall_at_20` and `ndcg_at_20` on the holdout ({holdout}) against
  `popularity_recall_at_20` / `popularity_ndcg_at_20`; per-epoch curves `train_loss`,
  `val_recall_at_20`, `val_ndcg_at_20` (validation split of the training days). Registered as
  `{retriever}`.
* `ranker-bst-<ds>-<reason>`: the BST ranker that re-ranks the retriever's candidates. Judge it by
  `ranker_ndcg_at_{k}` against `retrieval_ndcg_at_{k}` (the retriever's own order) and `ranker_auc`;
  per-epoch curves `train_loss`, `val_auc`. Registered as `{ranker}`, tag `retriever_version`.

Counts, sizes and timings are params; tags `ds`, `reason`, `model` say which night and why. The
canary compares the new pair with the serving one and moves the `champion` aliases
(`challenger` is the night's candidate)."""


def configure(settings: Settings) -> str:
    """Point MLflow at the installation's tracking store and experiment.

    Sets the process's tracking and registry URI to ``settings.tracking_uri``, creates
    the experiment ``settings.mlflow.experiment`` if needed (with
    ``artifact_location = settings.artifacts_dir`` for local stores), gives it its
    description and kind when it has none (a description edited in the UI is kept) and
    makes it the active experiment.

    Returns:
        The experiment id.
    """
    uri = settings.tracking_uri
    if _is_local_store(uri):
        settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
        settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = client_for(settings)
    experiment = client.get_experiment_by_name(settings.mlflow.experiment)
    if experiment is None:
        location = settings.artifacts_dir.as_uri() if _is_local_store(uri) else None
        try:
            experiment_id = client.create_experiment(settings.mlflow.experiment, artifact_location=location)
        except MlflowException:  # created concurrently by another task
            experiment_id = client.get_experiment_by_name(settings.mlflow.experiment).experiment_id
        tags = {}
    else:
        experiment_id, tags = experiment.experiment_id, experiment.tags
    wanted = {NOTE_TAG: experiment_description(settings), EXPERIMENT_KIND_TAG: CUSTOM_MODEL_DEVELOPMENT}
    for key, value in wanted.items():
        if not tags.get(key):
            client.set_experiment_tag(experiment_id, key, value)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def client_for(settings: Settings) -> MlflowClient:
    """An :class:`~mlflow.MlflowClient` bound to the installation's stores."""
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


@contextlib.contextmanager
def _run(settings: Settings, run_id: str | None) -> Iterator[str]:
    """The active run, the run ``run_id`` (resumed), or a fresh run; yields its id."""
    active = mlflow.active_run()
    if active is not None and run_id in (None, active.info.run_id):
        yield active.info.run_id
        return
    with mlflow.start_run(run_id=run_id) as run:
        yield run.info.run_id


def pip_requirements() -> list[str]:
    """What the pyfunc model needs at inference (explicit: no slow inference of them)."""
    return [
        f"mlflow=={mlflow.__version__}",
        f"numpy=={np.__version__}",
        f"pandas=={pd.__version__}",
        f"cloudpickle=={cloudpickle.__version__}",
    ]


def register_model(
    settings: Settings,
    embeddings: ModelEmbeddings,
    *,
    run_id: str | None = None,
    tags: dict[str, Any] | None = None,
    alias: str | None = None,
    base_embeddings: ModelEmbeddings | None = None,
) -> int:
    """Log ``embeddings`` as a pyfunc model and register it as a new version.

    Args:
        settings: the installation's settings.
        embeddings: the model; its ``meta`` (data window, metrics, lineage...) is stored
            in ``meta.json`` together with the run id.
        base_embeddings: the trained kinds' layer-0 embeddings, stored beside the served
            ones as ``base_embeddings.npz`` for the next warm start (not served).
        run_id: the run to log into; defaults to the active run, or a new run.
        tags: model-version tags (values are stringified), set as the version is created.
        alias: an alias to point at the new version (e.g. ``"challenger"``).

    Returns:
        The new version number of ``settings.mlflow.retriever_model_name``.
    """
    # lazy: the pyfunc model imports torch (training.topk); reading versions stays light
    from training import ids, pyfunc_model, topk

    configure(settings)
    with _run(settings, run_id) as active_run_id, tempfile.TemporaryDirectory() as tmp:
        meta = {**embeddings.meta, "run_id": active_run_id}
        directory = ModelEmbeddings(
            embeddings.user_ids, embeddings.item_ids, embeddings.user_emb, embeddings.item_emb, meta
        ).save(Path(tmp) / pyfunc_model.EMBEDDINGS_ARTIFACT, base=base_embeddings)
        # Pickle the model class and the helpers it calls by value: loading it needs no graphrec.
        by_value = (pyfunc_model, ids, topk)
        for module in by_value:
            cloudpickle.register_pickle_by_value(module)
        try:
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME_IN_RUN,
                python_model=pyfunc_model.EmbeddingRetriever(),
                artifacts={pyfunc_model.EMBEDDINGS_ARTIFACT: str(directory)},
                pip_requirements=[*pip_requirements(), f"torch=={importlib.metadata.version('torch')}"],
                signature=SIGNATURE,
                input_example=pd.DataFrame({"user_id": embeddings.user_ids[:2].astype(np.int64)}),
            )
        finally:
            for module in by_value:
                cloudpickle.unregister_pickle_by_value(module)
        version = create_version(
            settings, settings.mlflow.retriever_model_name, info, active_run_id, tags, description=RETRIEVER_DESCRIPTION
        )
    if alias is not None:
        set_alias(settings, alias, version)
    return version


RETRIEVER_DESCRIPTION = (
    "graphrec's retriever: user and item embeddings (pyfunc: user_id -> top-k items by inner product). "
    "Alias `challenger`: the latest night's candidate; `champion`: the version that serves."
)
RANKER_DESCRIPTION = (
    "graphrec's BST ranker: re-ranks the retriever's candidates (pyfunc: feature rows -> click "
    "probability). Tag `retriever_version`: the retriever it was trained and judged with."
)


def create_version(
    settings: Settings,
    name: str,
    info: ModelInfo,
    run_id: str,
    tags: dict[str, Any] | None = None,
    *,
    description: str | None = None,
) -> int:
    """Register the logged model ``info`` as a new version of ``name`` with ``tags``; its number.

    The registered model is created only when it does not exist yet (with ``description``):
    :func:`mlflow.register_model` would try to create it every time and print "Registered
    model ... already exists" to stderr, which Airflow's task log shows at error level.
    """
    client = client_for(settings)
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        try:
            client.create_registered_model(name, description=description)
        except MlflowException as again:  # created concurrently by another task
            if again.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise
    version = client.create_model_version(
        name,
        source=info.model_uri,
        run_id=run_id,
        tags={key: str(value) for key, value in (tags or {}).items()},
        model_id=info.model_id,
    )
    return int(version.version)


def set_alias(settings: Settings, alias: str, version: int, *, model: str | None = None) -> None:
    """Point ``alias`` of ``model`` (default: the retriever) at ``version`` (moving it if it exists)."""
    client_for(settings).set_registered_model_alias(model or settings.mlflow.retriever_model_name, alias, str(version))


def get_alias_version(settings: Settings, alias: str, *, model: str | None = None) -> int | None:
    """The version ``alias`` of ``model`` (default: the retriever) points at, or ``None``."""
    try:
        version = client_for(settings).get_model_version_by_alias(model or settings.mlflow.retriever_model_name, alias)
    except MlflowException as exc:
        # No registered model yet, or no such alias on it; anything else is a real error.
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return int(version.version)


def set_version_tags(settings: Settings, version: int, tags: dict[str, Any], *, model: str | None = None) -> None:
    """Set (stringified) tags on a version of ``model`` (default: the retriever)."""
    client = client_for(settings)
    for key, value in tags.items():
        client.set_model_version_tag(model or settings.mlflow.retriever_model_name, str(version), key, str(value))


def get_version_tags(settings: Settings, version: int, *, model: str | None = None) -> dict[str, str]:
    """The tags of a version of ``model`` (default: the retriever)."""
    return dict(
        client_for(settings).get_model_version(model or settings.mlflow.retriever_model_name, str(version)).tags
    )


def list_model_versions(settings: Settings) -> list[dict[str, Any]]:
    """Every registered retriever version as a small JSON-able dict, oldest first.

    Returns:
        ``[{version, aliases, run_id, created, ds, reason, recall_at_20, ndcg_at_20,
        canary_decision}, ...]``; tag-derived fields are ``None`` when absent, and the
        list is empty when nothing is registered yet.
    """
    try:
        versions = client_for(settings).search_model_versions(f"name='{settings.mlflow.retriever_model_name}'")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return []
        raise
    # Search results do not carry aliases in every store: read them off the model.
    aliases: dict[int, list[str]] = {}
    if versions:
        model = client_for(settings).get_registered_model(settings.mlflow.retriever_model_name)
        for alias, version in (model.aliases or {}).items():
            aliases.setdefault(int(version), []).append(alias)
    rows = []
    for mv in sorted(versions, key=lambda v: int(v.version)):
        tags = mv.tags or {}
        rows.append(
            {
                "version": int(mv.version),
                "aliases": sorted(aliases.get(int(mv.version), [])),
                "run_id": mv.run_id,
                "created": pd.Timestamp(mv.creation_timestamp, unit="ms", tz="UTC").isoformat(),
                "ds": tags.get("ds"),
                "reason": tags.get("reason"),
                "recall_at_20": float(tags["recall_at_20"]) if "recall_at_20" in tags else None,
                "ndcg_at_20": float(tags["ndcg_at_20"]) if "ndcg_at_20" in tags else None,
                "canary_decision": tags.get("canary.decision"),
            }
        )
    return rows


def resolve_version(settings: Settings, ref: int | str) -> int:
    """A version number from a number, a numeric string or an alias name.

    Raises:
        LookupError: the alias is not set.
    """
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        return int(ref)
    version = get_alias_version(settings, ref)
    if version is None:
        raise LookupError(f"model {settings.mlflow.retriever_model_name!r} has no alias {ref!r}")
    return version


def load_model_embeddings(settings: Settings, ref: int | str) -> ModelEmbeddings:
    """Load a registered retriever's embeddings by version number or alias.

    Args:
        settings: the installation's settings.
        ref: a version number (``3``) or an alias (``"champion"``, ``"challenger"``).

    Returns:
        The :class:`ModelEmbeddings`; its ``meta`` is the stored lineage (``run_id``,
        ``data_window``, ``metrics``...) plus ``model_version`` and ``model_name``.
    """
    return _load(settings, ref, base=False)


def load_warm_start_embeddings(settings: Settings, ref: int | str) -> ModelEmbeddings:
    """The embeddings a warm start from version ``ref`` begins with.

    Its layer-0 embeddings when they were registered with it (``base_embeddings``),
    else the served ones (versions registered before layer-0 embeddings were stored;
    for ``mf`` they are the same).

    Returns:
        :class:`ModelEmbeddings` with the version's ``meta`` (as
        :func:`load_model_embeddings`) plus ``embeddings_layer``: ``"base"`` or
        ``"served"``.
    """
    return _load(settings, ref, base=True)


def _load(settings: Settings, ref: int | str, *, base: bool) -> ModelEmbeddings:
    version = resolve_version(settings, ref)
    client = client_for(settings)
    model_version = client.get_model_version(settings.mlflow.retriever_model_name, str(version))
    # Resolving a models:/ URI consults the process-wide registry URI even when one is passed
    # explicitly (MLflow 3.17), so a fresh process (an Airflow task) must set it first.
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    uri = f"models:/{settings.mlflow.retriever_model_name}/{version}"
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=tmp, tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri
        )
        directory = _find_embeddings_dir(Path(local))
        embeddings = ModelEmbeddings.load(directory)
        layer0 = ModelEmbeddings.load_base(directory) if base else None
    meta = {
        **embeddings.meta,
        "model_name": settings.mlflow.retriever_model_name,
        "model_version": version,
        "run_id": model_version.run_id or embeddings.meta.get("run_id"),
    }
    if base:
        meta["embeddings_layer"] = "served" if layer0 is None else "base"
        embeddings = layer0 if layer0 is not None else embeddings
    return ModelEmbeddings(embeddings.user_ids, embeddings.item_ids, embeddings.user_emb, embeddings.item_emb, meta)


def _find_embeddings_dir(model_dir: Path) -> Path:
    """The ``embeddings/`` directory inside a downloaded pyfunc model."""
    matches = sorted(p.parent for p in model_dir.rglob("embeddings.npz"))
    if not matches:
        raise FileNotFoundError(f"no embeddings.npz in the model at {model_dir}")
    return matches[0]
