"""Prometheus metrics in a registry owned by one app, so tests can build many apps side by side.

Two modes, chosen by the environment when the app is built:

* one process (the default, and every test): the app's private registry, plus the standard
  `process_*` (CPU, memory, open files of this process) and `python_*` (version, GC) collectors;
* several uvicorn workers (`raqib serve --workers N`, N > 1): the command sets
  `PROMETHEUS_MULTIPROC_DIR` to a fresh directory before the workers start, every worker writes its
  values there, and a scrape of any worker sums them over all workers (prometheus-client's
  multiprocess mode). Per-process collectors cannot be summed, so only `python_info` (the same for
  every worker) is exposed besides the service's own metrics: no `process_*`, no `python_gc_*`.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

# Scoring one comment takes about a millisecond; batches and reloads take up to seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST

# prometheus-client reads these when it is imported; the old lower-case name still counts there.
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LEGACY_MULTIPROC_DIR_ENV = "prometheus_multiproc_dir"

_live_gauges_dropped_at_exit = False


def multiprocess_dir() -> str | None:
    """The directory the workers share their values in, or None when this process counts alone."""
    return os.environ.get(MULTIPROC_DIR_ENV) or os.environ.get(_LEGACY_MULTIPROC_DIR_ENV) or None


def _drop_live_gauges_at_exit() -> None:
    """A worker that stops takes its live gauges with it (its counters stay in the sums)."""
    global _live_gauges_dropped_at_exit
    if _live_gauges_dropped_at_exit:
        return
    from prometheus_client import multiprocess

    atexit.register(multiprocess.mark_process_dead, os.getpid())
    _live_gauges_dropped_at_exit = True


class ServiceMetrics:
    """The service's counters, histogram and model info, registered in a private registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = multiprocess_dir() is not None
        if self.multiprocess:
            _drop_live_gauges_at_exit()
        else:
            # This process is the whole server: its CPU, memory, file descriptors and GC are the server's.
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
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
        self._decision_children: dict[tuple[str, str], Any] = {}
        self.score_batch_size = Histogram(
            "raqib_score_batch_size",
            "Comments per model call on /v1/score: requests that waited together are scored at once.",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self._model_info: Info | None = None
        self._model_info_gauge: Gauge | None = None
        self._serving: tuple[str, str] | None = None
        if self.multiprocess:
            # Info metrics do not work in multiprocess mode: a gauge with the same sample
            # (`raqib_model_info{name,version} 1.0`). livemax: a version reads 1 while any live
            # worker serves it, so a reload that reached only some workers shows both versions.
            self._model_info_gauge = Gauge(
                "raqib_model_info",
                "The model currently serving (1), or served before a reload (0).",
                ["name", "version"],
                multiprocess_mode="livemax",
                registry=self.registry,
            )
        else:
            self._model_info = Info("raqib_model", "The model currently serving.", registry=self.registry)
        self.model_loaded = Gauge(
            "raqib_model_loaded",
            "1 when a model is loaded and serving, else 0.",
            # livemin over the workers: 1 only when every live worker serves a model. A worker
            # without one fails its share of the requests, which is what this gauge must show.
            multiprocess_mode="livemin",
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

    def count_decision(self, label: str, action: str) -> None:
        """Count one scored comment (the labelled child is kept: `labels()` costs a few µs a call,
        and the model's labels times three actions is a handful of children)."""
        child = self._decision_children.get((label, action))
        if child is None:
            child = self._decision_children[(label, action)] = self.decisions.labels(
                label=label, action=action
            )
        child.inc()

    def set_model(self, name: str, version: str) -> None:
        """Record which model serves now."""
        if self._model_info is not None:
            self._model_info.info({"name": name, "version": version})
        elif self._model_info_gauge is not None:
            if self._serving is not None and self._serving != (name, version):
                # Labels cannot be removed in multiprocess mode: the old version reads 0 instead.
                self._model_info_gauge.labels(*self._serving).set(0)
            self._model_info_gauge.labels(name, version).set(1)
        self._serving = (name, version)
        self.model_loaded.set(1)

    def render(self) -> bytes:
        """The exposition text: this process's registry, or the sums over every worker's values."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        # A fresh registry per scrape: the collector reads every worker's files as they are now.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        PlatformCollector(registry=registry)  # python_info is the same in every worker
        return generate_latest(registry)
