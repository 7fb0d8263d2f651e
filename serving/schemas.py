"""Pydantic models shared by the recommender and the HTTP API (its OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

#: The largest id the lake, the bundles and the feature store can hold (int64). A larger
#: one is refused (422 on the API, a usage error in ``graphrec``) before it reaches them.
MAX_ID = 2**63 - 1
#: The most items one answer holds: the bound of ``k`` on ``/recommend`` and ``/similar``, and of
#: ``graphrec recommend --k``.
MAX_K = 100


class ScoredItem(BaseModel):
    """One recommended item."""

    item_id: int
    score: float = Field(
        description="When reranked: the BST ranker's click probability in [0, 1]. Otherwise the inner product of "
        "user and item embeddings (retrieval score); for the popularity fallback, 1.0 for the most popular item "
        "decreasing linearly with rank."
    )


class Recommendation(BaseModel):
    """Top-k items for one user, with the versions that produced them."""

    user_id: int
    items: list[ScoredItem]
    index_version: str = Field(description="Published index version, e.g. v0007.")
    model_version: int | str | None = Field(None, description="Registered retriever model version behind the index.")
    ranker_version: int | None = Field(
        None, description="Registered BST ranker version published with the index; null for a retrieval-only index."
    )
    variant: Literal["champion", "challenger"] = Field(
        "champion",
        description="champion: the CURRENT version; challenger: the live canary version served to this user's "
        "share (split mode).",
    )
    reranked: bool = Field(
        False,
        description="True when the ranker ordered the items (scores are its probabilities); false when they are in "
        "retrieval or popularity order: no ranker, unknown user, or the ranker's features failed (see degraded).",
    )
    fallback: bool = Field(False, description="True when the list is the popularity fallback, not the model's.")
    fallback_reason: str | None = Field(None, description="Why the fallback was used, e.g. unknown_user.")
    excluded: int = Field(0, description="Candidates skipped because the user already interacted with them.")
    degraded: list[str] = Field(
        default_factory=list,
        description="Optional sources that failed for this request: recent_items, ranker_features (the answer is "
        "then in retrieval order).",
    )


class SimilarItems(BaseModel):
    """Items closest to one item in the served embedding space (inner product)."""

    item_id: int
    items: list[ScoredItem]
    index_version: str
    model_version: int | str | None = None


PointerVersion = Annotated[str | None, Field(description="The version the CURRENT pointer names.")]
RefusedVersion = Annotated[
    str | None,
    Field(
        description="The version CURRENT names that the service refuses (it fails verification or cannot be "
        "read); index_version keeps serving. Null when the service serves what CURRENT names."
    ),
]
Fallback = Annotated[
    bool,
    Field(
        description="True when the process started while CURRENT's version was refused and serves the newest older "
        "version that verifies instead; false again once CURRENT names a version that loads."
    ),
]


class Ready(BaseModel):
    """Readiness: whether the service can answer recommendations now."""

    status: Literal["ready", "not_ready"]
    index_version: str | None = None
    canary_version: str | None = None
    canary_mode: str | None = None
    canary_share: float | None = None
    detail: str | None = Field(None, description="Why CURRENT's version or the named canary is not served.")
    pointer_version: PointerVersion = None
    refused_version: RefusedVersion = None
    fallback: Fallback = False


class Health(BaseModel):
    """Liveness plus whether a published index is loaded."""

    status: Literal["ok", "no_index"]
    index_version: str | None = None
    model_version: int | str | None = None
    ranker_version: int | None = None
    detail: str | None = Field(None, description="Why no index is loaded, or why CURRENT's version is refused.")
    pointer_version: PointerVersion = None
    refused_version: RefusedVersion = None
    fallback: Fallback = False


class VersionInfo(BaseModel):
    """Summary of the manifest of the index version being served."""

    index_version: str
    model_version: int | str | None = None
    ranker_version: int | None = None
    run_id: str | None = None
    data_window: list[str] | None = None
    ds: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    created_at: str | None = None
    dim: int | None = None
    n_items: int | None = None
    n_users: int | None = None

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any], version: str) -> VersionInfo:
        window = manifest.get("data_window")
        if isinstance(window, dict):  # tolerate {"start": ..., "end": ...}
            window = [window.get("start"), window.get("end")]
        return cls(
            index_version=manifest.get("index_version") or version,
            model_version=manifest.get("model_version"),
            ranker_version=manifest.get("ranker_version"),
            run_id=manifest.get("run_id"),
            data_window=[str(v) for v in window] if window else None,
            ds=manifest.get("ds"),
            metrics=manifest.get("metrics") or {},
            created_at=manifest.get("created_at"),
            dim=manifest.get("dim"),
            n_items=manifest.get("n_items"),
            n_users=manifest.get("n_users"),
        )
