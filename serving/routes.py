"""HTTP routes of the recommendation service: one router per resource.

The shared :class:`~serving.recommender.Recommender` lives on ``app.state`` (built by
the lifespan in :mod:`serving.app`) and reaches the handlers through
``Annotated[..., Depends(...)]``.

The model routes (``/recommend``, ``/similar``) are ``async def`` and compute on the event
loop: an answer is ~2-3 ms of CPU that holds the GIL nearly throughout (FAISS, Feast's
SQLite read, numpy, the traced ranker), so a thread pool adds no parallelism, only
hand-offs: on the Gowalla-sized benchmark a re-ranked request cost ~3.5 ms of CPU through
the pool and ~2.5 ms inline. Parallelism comes from worker processes (``graphrec serve
--workers``). Nothing on that path waits long: a new index or canary version is loaded in
a background thread (``Recommender(background_swap=True)``), and a failing feature store
is skipped for a retry period after its first error. The other routes are plain ``def``
(FastAPI's thread pool): ``/metrics`` reads files.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from serving.recommender import Recommender, UnknownItem
from serving.schemas import MAX_ID, MAX_K, Health, Ready, Recommendation, SimilarItems, VersionInfo
from serving.swap import NoPublishedIndex

_UNAVAILABLE: dict[int | str, dict[str, Any]] = {503: {"description": "No usable index has been published yet."}}


async def get_recommender(request: Request) -> Recommender:
    """The application's recommender (503 while the lifespan has not built it)."""
    recommender = getattr(request.app.state, "recommender", None)
    if recommender is None:
        raise HTTPException(status_code=503, detail="the recommender is not initialised")
    return recommender


RecommenderDep = Annotated[Recommender, Depends(get_recommender)]

recommend_router = APIRouter(prefix="/recommend", tags=["recommend"])
similar_router = APIRouter(prefix="/similar", tags=["recommend"])
health_router = APIRouter(tags=["health"])
metrics_router = APIRouter(tags=["health"])
version_router = APIRouter(prefix="/version", tags=["version"])


@recommend_router.get("/{user_id}", response_model=Recommendation, responses=_UNAVAILABLE)
async def recommend(
    user_id: Annotated[int, Path(ge=0, le=MAX_ID, description="External user id (int64: 0 to 2**63 - 1).")],
    recommender: RecommenderDep,
    request: Request,
    k: Annotated[int, Query(ge=1, le=MAX_K, description="Number of items to return.")] = 10,
) -> Response:
    """Top-k unseen items for a user, re-ranked by the BST ranker when the index carries one;
    unknown users get the popularity fallback. During a live canary, a stable share of
    users is answered by the challenger (``variant``)."""
    answer = recommender.recommend(user_id, k)
    request.state.variant = answer.variant
    return _json(answer)


@similar_router.get(
    "/{item_id}",
    response_model=SimilarItems,
    responses={**_UNAVAILABLE, 404: {"description": "The item is not in the served index."}},
)
async def similar(
    item_id: Annotated[int, Path(ge=0, le=MAX_ID, description="External item id (int64: 0 to 2**63 - 1).")],
    recommender: RecommenderDep,
    request: Request,
    k: Annotated[int, Query(ge=1, le=MAX_K, description="Number of items to return.")] = 10,
) -> Response:
    """Items closest to an item in the champion's embedding space (inner product), itself excluded."""
    request.state.variant = "champion"
    try:
        return _json(recommender.similar(item_id, k))
    except UnknownItem as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc


def _json(model: BaseModel) -> Response:
    """The model serialised by pydantic (in Rust), as FastAPI would send it.

    A returned model would be dumped, validated again against ``response_model`` and
    encoded by the standard library's ``json``: ~0.15 ms per recommendation that the
    model's own validation at construction already covers. ``response_model`` still
    documents the route in OpenAPI.
    """
    return Response(model.model_dump_json(), media_type="application/json")


@health_router.get("/healthz", response_model=Health)
@health_router.head("/healthz", response_model=Health, include_in_schema=False)
def healthz(recommender: RecommenderDep) -> Health:
    """Liveness (always 200) plus whether an index is loaded, which one, and which version ``CURRENT``
    names when the service refuses it. ``HEAD`` answers the same status without a body."""
    try:
        bundle = recommender.refresh()
    except NoPublishedIndex as exc:
        state = recommender.state
        return Health(
            status="no_index",
            detail=str(exc),
            pointer_version=state.pointer_version,
            refused_version=state.refused_version,
        )
    state = recommender.state
    return Health(
        status="ok",
        index_version=bundle.version,
        model_version=bundle.model_version,
        ranker_version=bundle.ranker_version,
        detail=state.detail,
        pointer_version=state.pointer_version,
        refused_version=state.refused_version,
        fallback=state.fallback,
    )


@health_router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
@health_router.head("/readyz", response_model=Ready, include_in_schema=False)
def readyz(recommender: RecommenderDep) -> Ready | JSONResponse:
    """Readiness: 200 once a verified index is loaded (and the live canary, if any), else 503.

    Still 200 while the version ``CURRENT`` names is refused and an older one serves
    (``refused_version``, ``fallback`` and ``detail`` say so). ``HEAD`` answers the same
    status without a body.
    """
    try:
        bundle = recommender.refresh()
    except NoPublishedIndex as exc:
        state = recommender.state
        not_ready = Ready(
            status="not_ready",
            detail=str(exc),
            pointer_version=state.pointer_version,
            refused_version=state.refused_version,
        )
        return JSONResponse(status_code=503, content=not_ready.model_dump())
    canary = recommender.refresh_canary()
    state = recommender.state
    problems = [text for text in (state.detail, recommender.canary_error) if text]
    return Ready(
        status="ready",
        index_version=bundle.version,
        canary_version=canary.bundle.version if canary else None,
        canary_mode=canary.spec.mode if canary else None,
        canary_share=canary.spec.share if canary else None,
        detail="; ".join(problems) or None,
        pointer_version=state.pointer_version,
        refused_version=state.refused_version,
        fallback=state.fallback,
    )


@metrics_router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(request: Request, recommender: RecommenderDep) -> Response:
    """Prometheus metrics: request counts and latency by route, status and variant, served-item
    popularity by variant, degraded sources, shadow overlap and the versions being served."""
    sink = request.app.state.metrics
    try:
        current = recommender.refresh()
    except NoPublishedIndex:
        current = None
    sink.set_versions(current, recommender.refresh_canary(), recommender.state)
    body, content_type = sink.render()
    return Response(content=body, media_type=content_type)


@version_router.get("", response_model=VersionInfo, responses=_UNAVAILABLE)
def version(recommender: RecommenderDep) -> VersionInfo:
    """Manifest summary of the index version being served."""
    bundle = recommender.refresh()
    return VersionInfo.from_manifest(bundle.manifest, bundle.version)
