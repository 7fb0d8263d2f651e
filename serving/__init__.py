"""FAISS index publication and the recommendation service.

Modules:
    index: build, save, load and search a FAISS index (pure FAISS idioms).
    history: pure transforms for what users have seen and what is popular.
    bundle: the on-disk layout of one published version, its checksums and the
        ``CURRENT`` pointer.
    publish: versioned, atomic publication of a model's embeddings (and rollback).
    recommender: the in-process recommender that hot-swaps to newly published versions.
    schemas: pydantic models shared by the recommender and the HTTP API.
    routes: one FastAPI router per resource.
    app: the FastAPI application factory and its lifespan.

Nothing here has side effects at import time; heavy imports happen inside the modules
that need them.
"""
