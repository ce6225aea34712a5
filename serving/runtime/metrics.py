"""Prometheus metrics in a registry owned by one app, so tests can build many apps side by side."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Scoring one comment takes about a millisecond; batches and reloads take up to seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    """The service's counters, histogram and model info, registered in a private registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "raqib_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "raqib_request_seconds",
            "Time to answer an HTTP request, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter(
            "raqib_decisions",
            "Scored comments by top label and decided action (before observe mode turns it into approve).",
            ["label", "action"],
            registry=self.registry,
        )
        self.model_info = Info(
            "raqib_model",
            "The model currently serving.",
            registry=self.registry,
        )
        self.model_loaded = Gauge(
            "raqib_model_loaded",
            "1 when a model is loaded and serving, else 0.",
            registry=self.registry,
        )
        self.reloads = Counter(
            "raqib_model_reloads",
            "Model reloads (admin endpoint or SIGHUP) by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.shadow_agreement = Counter(
            "raqib_shadow_agreement",
            "Comments scored by both champion and shadow, by whether they agreed (same action and label).",
            ["agree"],
            registry=self.registry,
        )
        self.shadow_errors = Counter(
            "raqib_shadow_errors",
            "Comments the shadow model failed to score (the champion's answer stood).",
            registry=self.registry,
        )

        self.rate_limited = Counter(
            "raqib_rate_limited",
            "Requests refused with 429 by the per-key rate limit, by route template and policy "
            "('default' or the site whose own limit applied).",
            ["route", "policy"],
            registry=self.registry,
        )
        self.audit_failures = Counter(
            "raqib_audit_failures",
            "Scored comments whose audit record could not be written (the score was answered anyway).",
            registry=self.registry,
        )

    def set_model(self, name: str, version: str) -> None:
        """Record which model serves now."""
        self.model_info.info({"name": name, "version": version})
        self.model_loaded.set(1)

    def render(self) -> bytes:
        """The exposition text of this registry."""
        return generate_latest(self.registry)
