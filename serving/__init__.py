"""FAISS index publication, the canary gate and the recommendation service.

Modules:
    index: build, save, load and search a FAISS index (pure FAISS idioms).
    index_check: an index's recall against exact search, checked before it serves.
    history: pure transforms for what users have seen and what is popular.
    layout: the on-disk layout of published versions, the ``CURRENT`` and ``CANARY``
        files and the manifests' checksums.
    bundle: one published version loaded into memory (:class:`~serving.bundle.Bundle`).
    bundle_writer: writing a version directory and checking it before publication.
    versions: listing, verifying, activating, numbering and pruning published versions.
    publish: versioned, atomic publication of a model's embeddings (and its ranker).
    promotion: rollback and the live canary, moving pointers and MLflow aliases together.
    canary_bootstrap, canary_rules: the canary gate's statistics and rules (pure).
    canary_evidence: the gate's measurements on the fresh holdout.
    canary_result: the gate's typed result and its MLflow tags.
    canary: the gate itself (registry reads, alias moves, tags).
    swap: the bundles the service answers from, hot-swapped when published files change.
    candidates: one bundle's retrieval, popularity fallback and ranker scores for a user.
    sources: the breakers of the optional sources (recent items, ranker features) and their probes.
    recommender: the in-process recommender answering one request.
    schemas: pydantic models shared by the recommender and the HTTP API.
    routes: one FastAPI router per resource.
    metrics: the service's Prometheus metrics.
    app: the FastAPI application factory and its lifespan.

Nothing here has side effects at import time; torch is imported only where a ranker is
loaded or scored.
"""
