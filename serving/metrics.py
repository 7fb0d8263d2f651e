"""Prometheus metrics of the recommendation service (``GET /metrics``).

Each application owns a :class:`ServiceMetrics` with its own
:class:`prometheus_client.CollectorRegistry`, so several apps (tests, embedding) never
collide in the process-wide default registry. What is exported:

* ``graphrec_requests_total{endpoint, status, variant}``: requests by route template
  (``/recommend/{user_id}``), HTTP status and serving variant (``champion``,
  ``challenger`` for the live canary's share, ``none`` for routes that serve no model);
* ``graphrec_request_duration_seconds{endpoint, variant}``: latency histogram, measured
  around the whole ASGI call (routing, validation, model, serialisation);
* ``graphrec_served_item_popularity{variant}``: per request, the mean popularity
  percentile of the served items (0 = the most popular item, 1 = outside the popularity
  list), to compare how popular the challenger's recommendations are;
* ``graphrec_degraded_total{source}`` and ``graphrec_fallback_total{reason}``;
* ``graphrec_shadow_overlap`` and ``graphrec_shadow_item_popularity``: in shadow mode,
  the share of the served list the challenger would also have served, and its items'
  popularity;
* ``graphrec_index_version{role}`` (the number of the ``current`` and ``canary``
  versions, and of the ``refused`` version ``CURRENT`` names but the service refuses; 0
  when none), ``graphrec_canary_share`` and ``graphrec_index_info`` (labels with the
  served index, model and ranker versions; value 1);
* ``graphrec_serving_refused`` (1 while the service refuses the version ``CURRENT`` names
  and serves another) and ``graphrec_serving_fallback`` (1 while a process that started
  on a refused ``CURRENT`` serves the newest older version that verifies).

With several worker processes (``graphrec serve --workers N``) each process counts its
own requests; ``PROMETHEUS_MULTIPROC_DIR`` and ``GRAPHREC_METRICS_MULTIPROC_DIR`` (both
set by ``graphrec serve``) make every process write its values there and ``/metrics``
aggregate them
(:class:`prometheus_client.multiprocess.MultiProcessCollector`): counters and histograms
are summed, the version gauges show the largest live value.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from serving.layout import version_number

#: Set by ``graphrec serve --workers N`` (with ``PROMETHEUS_MULTIPROC_DIR``, which must be in
#: the environment before ``prometheus_client`` is imported): aggregate the processes'
#: metrics. Not ``PROMETHEUS_MULTIPROC_DIR`` itself: importing Feast sets that variable
#: in every process that uses it (``feast.metrics``).
MULTIPROCESS_ENV = "GRAPHREC_METRICS_MULTIPROC_DIR"

#: Latency buckets (seconds): fine below 20 ms, where the service's target lies.
LATENCY_BUCKETS = (
    0.001,
    0.002,
    0.003,
    0.004,
    0.005,
    0.0075,
    0.01,
    0.0125,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
SHARE_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
POPULARITY_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


class ServiceMetrics:
    """The service's Prometheus instruments, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "graphrec_requests",
            "HTTP requests by route, status and variant.",
            ["endpoint", "status", "variant"],
            registry=r,
        )
        self.latency = Histogram(
            "graphrec_request_duration_seconds",
            "Request latency by route and variant.",
            ["endpoint", "variant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.popularity = Histogram(
            "graphrec_served_item_popularity",
            "Mean popularity percentile of the items served per request (0: most popular).",
            ["variant"],
            buckets=POPULARITY_BUCKETS,
            registry=r,
        )
        self.degraded = Counter(
            "graphrec_degraded", "Requests answered without an optional source.", ["source"], registry=r
        )
        self.fallback = Counter(
            "graphrec_fallback", "Requests answered by the popularity fallback.", ["reason"], registry=r
        )
        self.shadow_overlap = Histogram(
            "graphrec_shadow_overlap",
            "Shadow mode: share of the served list the challenger would also serve.",
            buckets=SHARE_BUCKETS,
            registry=r,
        )
        self.shadow_popularity = Histogram(
            "graphrec_shadow_item_popularity",
            "Shadow mode: mean popularity percentile of the challenger's items.",
            buckets=POPULARITY_BUCKETS,
            registry=r,
        )
        self.index_version = Gauge(
            "graphrec_index_version",
            "Number of the index version in each role (0: none).",
            ["role"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.canary_share = Gauge(
            "graphrec_canary_share",
            "Share of users served by the live canary.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.index_info = Gauge(
            "graphrec_index_info",
            "The versions being served (value 1; 0 for versions served before).",
            ["role", "index_version", "model_version", "ranker_version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.refused = Gauge(
            "graphrec_serving_refused",
            "1 while the version CURRENT names is refused (fails verification) and another one serves.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.fallback_serving = Gauge(
            "graphrec_serving_fallback",
            "1 while serving the newest older verified version because CURRENT's failed at start-up.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self._info_labels: set[tuple[str, ...]] = set()

    # Recommender hooks (serving.recommender.ServiceObserver) -----------------
    def observe_served(self, variant: str, popularity: float, answer: Any) -> None:
        self.popularity.labels(variant).observe(popularity)
        for source in answer.degraded:
            self.degraded.labels(source).inc()
        if answer.fallback_reason:
            self.fallback.labels(answer.fallback_reason).inc()

    def observe_shadow(self, overlap: float, popularity: float | None) -> None:
        self.shadow_overlap.observe(overlap)
        if popularity is not None:
            self.shadow_popularity.observe(popularity)

    # HTTP ---------------------------------------------------------------------
    def observe_request(self, endpoint: str, status: int, variant: str, seconds: float) -> None:
        self.requests.labels(endpoint, str(status), variant).inc()
        self.latency.labels(endpoint, variant).observe(seconds)

    def set_versions(self, current: Any | None, canary: Any | None, state: Any | None = None) -> None:
        """Refresh the version gauges from the bundles in use (called at scrape time).

        Args:
            current: the champion bundle, or ``None``.
            canary: the live canary (:class:`serving.swap.LiveCanary`), or ``None``.
            state: the :class:`serving.swap.ServingState` (refused version, fallback), or ``None``.
        """
        refused = getattr(state, "refused_version", None)
        self.index_version.labels("refused").set((version_number(refused) or 0) if refused else 0)
        self.refused.set(1 if current is not None and getattr(state, "detail", None) else 0)
        self.fallback_serving.set(1 if getattr(state, "fallback", False) else 0)
        labels = set()
        for role, bundle in (("current", current), ("canary", getattr(canary, "bundle", None))):
            number = version_number(bundle.version) if bundle is not None else None
            self.index_version.labels(role).set(number or 0)
            if bundle is not None:
                labels.add((role, bundle.version, str(bundle.model_version), str(bundle.ranker_version)))
        for old in self._info_labels - labels:  # set to 0, not removed: works across processes too
            self.index_info.labels(*old).set(0)
        for new in labels:
            self.index_info.labels(*new).set(1)
        self._info_labels |= labels
        self.canary_share.set(canary.spec.share if canary is not None and canary.spec.mode == "split" else 0.0)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        directory = os.environ.get(MULTIPROCESS_ENV)
        if directory:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=directory)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI middleware: count and time every HTTP request by route template and status.

    The route handler may put the serving variant in ``request.state.variant``; requests
    that serve no model are labelled ``none``. Unmatched paths are grouped under
    ``unmatched`` so that arbitrary URLs cannot blow up the label space.
    """

    def __init__(self, app: Any, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            variant = (scope.get("state") or {}).get("variant", "none")
            self.metrics.observe_request(endpoint, status, variant, time.perf_counter() - start)
