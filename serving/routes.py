"""HTTP routes of the recommendation service: one router per resource.

The shared :class:`~serving.recommender.Recommender` lives on ``app.state`` (built by
the lifespan in :mod:`serving.app`) and reaches the handlers through
``Annotated[..., Depends(...)]``. Handlers are plain ``def``: FAISS search is
blocking, so FastAPI runs them in its thread pool.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from serving.recommender import NoPublishedIndex, Recommender
from serving.schemas import Health, Recommendation, VersionInfo

_UNAVAILABLE: dict[int | str, dict[str, Any]] = {503: {"description": "No usable index has been published yet."}}


def get_recommender(request: Request) -> Recommender:
    """The application's recommender (503 while the lifespan has not built it)."""
    recommender = getattr(request.app.state, "recommender", None)
    if recommender is None:
        raise HTTPException(status_code=503, detail="the recommender is not initialised")
    return recommender


RecommenderDep = Annotated[Recommender, Depends(get_recommender)]

recommend_router = APIRouter(prefix="/recommend", tags=["recommend"])
health_router = APIRouter(tags=["health"])
version_router = APIRouter(prefix="/version", tags=["version"])


@recommend_router.get("/{user_id}", response_model=Recommendation, responses=_UNAVAILABLE)
def recommend(
    user_id: Annotated[int, Path(ge=0, description="External user id.")],
    recommender: RecommenderDep,
    k: Annotated[int, Query(ge=1, le=100, description="Number of items to return.")] = 10,
) -> Recommendation:
    """Top-k unseen items for a user, re-ranked by the BST ranker when the index carries one;
    unknown users get the popularity fallback."""
    return recommender.recommend(user_id, k)


@health_router.get("/healthz", response_model=Health)
def healthz(recommender: RecommenderDep) -> Health:
    """Liveness (always 200) plus whether an index is loaded and which one."""
    try:
        bundle = recommender.refresh()
    except NoPublishedIndex as exc:
        return Health(status="no_index", detail=str(exc))
    return Health(
        status="ok", index_version=bundle.version, model_version=bundle.model_version, ranker_version=bundle.ranker_version
    )


@version_router.get("", response_model=VersionInfo, responses=_UNAVAILABLE)
def version(recommender: RecommenderDep) -> VersionInfo:
    """Manifest summary of the index version being served."""
    bundle = recommender.refresh()
    return VersionInfo.from_manifest(bundle.manifest, bundle.version)
