"""The FastAPI application factory of the recommendation service.

Run it with uvicorn's factory mode, which reads settings from the environment::

    uvicorn --factory serving.app:app_from_env --host 127.0.0.1 --port 8000

Nothing is loaded at import time: the lifespan builds the
:class:`~serving.recommender.Recommender` (and, when enabled, the Feast online hooks:
recent items to exclude, features for the BST ranker) and warms it with the current
index if one is published.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from features.online import OnlineFeatures
from graphrec import __version__
from graphrec.settings import Settings, get_settings
from serving.metrics import MetricsMiddleware, ServiceMetrics
from serving.recommender import RecentItemsFn, Recommender
from serving.routes import health_router, metrics_router, recommend_router, similar_router, version_router
from serving.swap import NoPublishedIndex

log = logging.getLogger(__name__)

#: Where the service serves the Swagger UI and ReDoc assets (shipped by ``fastapi-offline``).
DOCS_ASSETS_URL = "/docs-assets"


def online_recent_items_hook(settings: Settings) -> RecentItemsFn:
    """A ``recent_items_fn`` backed by the Feast online store, for a service without a ranker.

    The same reader as :func:`online_ranker_features_hook` (its ``recent_items``): it
    opens the store (importing Feast) on first use, and after a failed read reconnects
    on the next. Errors surface when it is called; the recommender treats them as a
    degraded optional source.
    """
    return OnlineFeatures(settings).recent_items


def online_ranker_features_hook(settings: Settings) -> OnlineFeatures:
    """A ``ranker_features_fn`` reading the BST ranker's features from the Feast online store
    (:class:`features.online.OnlineFeatures`: item rows kept between materializations).

    The reader imports Feast only when it first opens the store, so building
    the hook is cheap; store errors surface per request, where the recommender answers
    in retrieval order and reports ``ranker_features`` as degraded. Its ``recent_items``
    is the service's ``recent_items_fn`` too: one read of the user per request.
    """
    return OnlineFeatures(settings)


def warm_online_store(settings: Settings) -> None:
    """Open the Feast store once at start-up so the first request does not pay for it.

    Opening it imports Feast and reads the registry (seconds); failures are logged only:
    the recommender degrades per request anyway.
    """
    try:
        from features.store import feature_store

        feature_store(settings)
    except Exception:
        log.warning("Feast online store unavailable at start-up", exc_info=True)


def prefetch_item_features(reader: OnlineFeatures, item_ids: Iterable[int]) -> None:
    """Read the served catalog's item features into the ranker's reader before serving.

    Otherwise the first minutes of requests each read their uncached candidates' rows
    (tens of ms for a cold request on a Gowalla-sized store). Failures are logged only:
    requests read what they need, or degrade, as without it.
    """
    started = time.perf_counter()
    try:
        n = reader.prefetch(item_ids)
        log.info("read %d items' ranker features in %.1f s", n, time.perf_counter() - started)
    except Exception:
        log.warning("could not prefetch item features from the online store", exc_info=True)


def online_features_enabled(settings: Settings, requested: bool | None = None) -> bool:
    """Whether to exclude recent items from the Feast online store.

    Args:
        settings (Settings): installation settings.
        requested (bool | None): explicit choice; ``None`` means "when a Feast store
            exists under ``settings.feast_dir``".
    """
    if requested is not None:
        return requested
    return settings.feast_dir.is_dir()


def create_app(
    settings: Settings,
    recommender: Recommender | None = None,
    *,
    online_features: bool | None = None,
    ranker_features: bool | None = None,
) -> FastAPI:
    """Build the recommendation service.

    Args:
        settings (Settings): installation settings.
        recommender (Recommender | None): use this recommender instead of building one
            in the lifespan (tests, embedding the service elsewhere).
        online_features (bool | None): exclude the Feast online store's recent items
            as well as the published history; ``None`` decides by
            :func:`online_features_enabled`.
        ranker_features (bool | None): re-rank with the published bundle's BST ranker,
            reading its features from the Feast online store (bundles without a ranker
            are served retrieval-only either way); ``None`` means
            ``settings.ranker.enabled``. ``settings.ranker.candidates`` candidates are
            re-ranked per request.

    Returns:
        FastAPI: the application with ``/recommend/{user_id}``, ``/similar/{item_id}``,
        ``/healthz``, ``/readyz``, ``/metrics`` (Prometheus) and ``/version``; ``/docs``
        (Swagger UI) and ``/redoc`` serve the OpenAPI description with their JavaScript,
        CSS and favicon from the service itself (:data:`DOCS_ASSETS_URL`), so they work
        without internet access.
    """
    service_metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rec = recommender
        if rec is None:
            recent_hook = ranker_hook = None
            if settings.ranker.enabled if ranker_features is None else ranker_features:
                ranker_hook = online_ranker_features_hook(settings)
            if online_features_enabled(settings, online_features):
                # The ranker's reader reads the user's views once per request for both.
                recent_hook = (
                    ranker_hook.recent_items if ranker_hook is not None else online_recent_items_hook(settings)
                )
            if recent_hook is not None or (ranker_hook is not None and settings.feast_dir.is_dir()):
                warm_online_store(settings)
            rec = Recommender(
                settings,
                recent_items_fn=recent_hook,
                ranker_features_fn=ranker_hook,
                rerank_candidates=settings.ranker.candidates,
                metrics=service_metrics,
                background_swap=True,
            )
        app.state.recommender = rec
        if settings.serve.threads:
            # Fewer handler threads than anyio's 40: on a few cores, dozens of threads
            # fighting for the GIL lengthen the tail without adding throughput.
            to_thread.current_default_thread_limiter().total_tokens = settings.serve.threads
        try:
            bundle = rec.refresh()
            log.info(
                "recommendation service ready with index %s (ranker version %s)", bundle.version, bundle.ranker_version
            )
            if recommender is None and ranker_hook is not None and bundle.ranker is not None:
                prefetch_item_features(ranker_hook, bundle.item_ids)
        except NoPublishedIndex as exc:
            log.warning("recommendation service started without an index: %s", exc)
        # Everything loaded so far (Feast, torch, MLflow modules, the bundle) lives as long as
        # the process: keep it out of the cyclic collector, whose full passes over those
        # millions of objects would otherwise pause requests.
        gc.collect()
        gc.freeze()
        yield
        app.state.recommender = None

    # FastAPI's own /docs and /redoc load their assets from a CDN: blank on an offline host.
    app = FastAPIOffline(
        static_url=DOCS_ASSETS_URL,
        title="graphrec recommendations",
        version=__version__,
        description="Top-k recommendations from the currently published retriever/FAISS index, re-ranked by its "
        "BST ranker when the index carries one.",
        lifespan=lifespan,
    )
    app.state.metrics = service_metrics
    app.add_middleware(MetricsMiddleware, metrics=service_metrics)
    app.include_router(recommend_router)
    app.include_router(similar_router)
    app.include_router(health_router)
    app.include_router(metrics_router)
    app.include_router(version_router)
    app.add_exception_handler(NoPublishedIndex, _index_unavailable)
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory``: settings from the ``GRAPHREC_`` environment."""
    return create_app(get_settings())


async def _index_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": str(exc)})
