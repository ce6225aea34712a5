"""The scoring service: `create_app()` builds the FastAPI app (a uvicorn factory), `run()` serves it.

    uvicorn serving.api.app:create_app --factory --port 8000

Importing this module has no side effects: settings are read and the model is loaded only when
`create_app()` is called and its lifespan starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp

from serving.api.errors import install_error_handlers
from serving.api.integrations import akismet, coral, perspective, webhooks
from serving.api.middleware import (
    BodyLimitMiddleware,
    JsonLogFormatter,
    RequestContextMiddleware,
    too_large,
    too_large_message,
)
from serving.api.queue import routes as queue
from serving.api.queue.auth import build_queue_auth
from serving.api.routes import admin, articles, docs, feedback, health, model_info, score
from serving.model.bundle import BundleError
from serving.runtime.holder import ModelHolder
from serving.runtime.metrics import ServiceMetrics
from serving.runtime.ratelimit import RateLimiter
from serving.services.context import Service
from serving.services.remote import RemoteWork
from serving.services.scoring import comment_batcher
from serving.settings import SETTINGS_FILE_ENV, Settings, load_settings
from serving.store.engine import default_store_url
from serving.store.store import StoreHolder

logger = logging.getLogger("raqib")

API_DESCRIPTION = """\
Scores reader comments on Arabic news sites against their article:
**on_topic**, **off_topic**, **spam** or **abusive**, with an action for the CMS
(approve / review / reject), the reasons and the flagged spans of the comment.

Authenticate with `Authorization: Bearer <API key>`. Every error is
`{"error": {"code", "message", "field"}}`.
"""


TEXT_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Headers a browser page may send and read when CORS is configured (the API's own, nothing else).
CORS_REQUEST_HEADERS = ["Authorization", "Content-Type", "X-Request-ID", "X-Goog-Api-Key"]
CORS_EXPOSED_HEADERS = ["X-Request-ID", "Retry-After", "RateLimit-Limit", "RateLimit-Remaining"]


def _log_formatter(log_format: str) -> logging.Formatter:
    return JsonLogFormatter() if log_format == "json" else logging.Formatter(TEXT_LOG_FORMAT)


def _ensure_log_output(level: str, log_format: str) -> None:
    """Show the service's own log lines when nobody configured logging (plain `uvicorn ...`)."""
    service_logger = logging.getLogger("raqib")
    service_logger.setLevel(level)
    if not service_logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(_log_formatter(log_format))
        service_logger.addHandler(handler)


def _install_sighup(service: Service, pending: set[asyncio.Task[Any]]) -> bool:
    """Reload on SIGHUP when we own the main thread's loop (uvicorn), not under a TestClient thread."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGHUP"):
        return False
    loop = asyncio.get_running_loop()

    def on_sighup() -> None:
        task = loop.create_task(asyncio.to_thread(_reload_quietly, service))
        pending.add(task)
        task.add_done_callback(pending.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_sighup)
    except (NotImplementedError, RuntimeError, ValueError):  # loops without signal support
        return False
    return True


def _reload_quietly(service: Service) -> None:
    with contextlib.suppress(BundleError):  # already logged and counted; the old model serves on
        admin.perform_reload(service, "SIGHUP")


async def _load_first_model(service: Service) -> None:
    """Load the bundle at start-up. A function of its own, not inline in the lifespan: a local there
    lives as long as the server, and kept the first model (~110 MB) alive after every reload."""
    try:
        # Loading unpickles and warms the model: CPU-bound, so off the event loop.
        loaded = await asyncio.to_thread(service.models.load)
    except BundleError as exc:
        # Stay up: /healthz answers, /readyz says 503 with this error, and a reload can fix it.
        logger.error("no model loaded: %s", exc)
    else:
        service.metrics.set_model(loaded.name, loaded.version)
        logger.info("serving %s %s from %s", loaded.name, loaded.version, loaded.bundle_path)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    service: Service = app.state.service
    if service.open_access:
        logger.warning(
            "no API keys configured (RAQIB_API_KEYS / RAQIB_API_KEYS_FILE): the scoring API "
            "is OPEN to anyone who can reach this port"
        )
    await _load_first_model(service)
    # Without a store scoring goes on (unaudited); store-backed routes answer 503 store_unavailable.
    # A store an older Raqib made raises SchemaOutdated here: the server stops until `raqib db upgrade`.
    await asyncio.to_thread(service.stores.open)
    if service.remote is not None:
        service.remote.start()  # Coral's kept jobs (if any) run from now on
    pending: set[asyncio.Task[Any]] = set()
    sighup = _install_sighup(service, pending)
    try:
        yield
    finally:
        if sighup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for task in list(pending):
            with contextlib.suppress(Exception):
                await task
        if service.remote is not None:
            await asyncio.to_thread(service.remote.close)
        if service.batcher is not None:
            await service.batcher.close()
        await asyncio.to_thread(service.stores.close)


def _without_framework_validation_errors(app: FastAPI) -> None:
    """Drop the 422 `HTTPValidationError` FastAPI documents by default: this app never answers that shape.

    Routes that can answer 422 declare it with the API's own ErrorResponse; the Perspective and Akismet
    routes answer invalid input with their protocols' 400 instead.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                answer = operation.get("responses", {}).get("422")
                if answer is not None and "HTTPValidationError" in json.dumps(answer):
                    del operation["responses"]["422"]
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service from `settings` (default: RAQIB_* environment and RAQIB_SETTINGS_FILE)."""
    settings = settings if settings is not None else load_settings()
    _ensure_log_output(settings.log_level, settings.log_format)
    admin_key = settings.resolved_admin_key()
    stores = StoreHolder(
        settings.store_url.get_secret_value() if settings.store_url else default_store_url(settings.state_dir)
    )
    metrics = ServiceMetrics()
    service = Service(
        settings=settings,
        models=ModelHolder(settings),
        metrics=metrics,
        api_keys=tuple(key.encode("utf-8") for key in settings.resolved_api_keys()),
        admin_key=admin_key.encode("utf-8") if admin_key else None,
        stores=stores,
        rate_limiter=RateLimiter.from_settings(settings),
        coral_secrets=settings.resolved_coral_secrets(),
        webhook_secrets=settings.resolved_webhook_secrets(),
        remote=RemoteWork.from_settings(settings, stores),
        batcher=comment_batcher(settings, metrics),
    )
    app = FastAPI(
        title="Raqib scoring API",
        version="1",
        description=API_DESCRIPTION,
        lifespan=_lifespan,
        # FastAPI's own /docs and /redoc load their scripts from a CDN: ours (docs.router) do not.
        docs_url=None,
        redoc_url=None,
        telemetry={
            "tracing": settings.opentelemetry,
            "metrics": settings.opentelemetry,
            "logs": settings.opentelemetry,
        },
    )
    app.state.service = service
    app.state.queue_auth = build_queue_auth(settings, admin_key)
    routers = (
        score.router,
        articles.router,
        feedback.router,
        coral.router,
        perspective.router,
        akismet.router,
        webhooks.router,
        model_info.router,
        admin.router,
        health.router,
        queue.router,
        queue.page_router,
        docs.router,
    )
    for router in routers:
        app.include_router(router)
    install_error_handlers(app)
    _without_framework_validation_errors(app)
    # The queue page's scripts, styles and strings, from the package itself: no CDN, works offline.
    app.mount(queue.STATIC_PREFIX, StaticFiles(directory=queue.STATIC_DIR), name="static")
    # Swagger UI's and ReDoc's scripts and styles, from an installed package for the same reason.
    app.mount(docs.DOCS_ASSETS_PREFIX, StaticFiles(directory=docs.DOCS_ASSETS_DIR), name="docs-assets")

    # Routes that may carry a whole article (or its text as context) get the larger article limit.
    article_paths = {
        feedback.FEEDBACK_PATH,
        coral.WEBHOOK_PATH,
        perspective.ANALYZE_PATH,
        perspective.SUGGEST_PATH,
        akismet.COMMENT_CHECK_PATH,
        akismet.SUBMIT_SPAM_PATH,
        akismet.SUBMIT_HAM_PATH,
        webhooks.WEBHOOK_PATH,
    }

    def body_limit(path: str) -> int:
        if path in (score.BATCH_PATH, queue.IMPORT_PATH):
            return settings.max_batch_body_bytes
        if path in article_paths or path.startswith(articles.ARTICLES_PREFIX):
            return settings.max_article_body_bytes
        return settings.max_body_bytes

    def too_large_for(path: str, limit: int) -> ASGIApp:
        if path in (perspective.ANALYZE_PATH, perspective.SUGGEST_PATH):
            return perspective.perspective_error(413, too_large_message(limit))
        if path in akismet.PATHS:
            return akismet.akismet_failure(413, too_large_message(limit))
        return too_large(limit)

    # Added innermost first: the request context wraps the body limit, so 413s are logged and counted.
    app.add_middleware(BodyLimitMiddleware, limit_for_path=body_limit, too_large_for_path=too_large_for)
    app.add_middleware(queue.QueueSecurityHeadersMiddleware)
    if settings.cors_origins:
        # Off unless configured: no browser page may call the API cross-origin by default.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT"],
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_EXPOSED_HEADERS,
            allow_credentials=False,
            max_age=600,
        )
    known_routes = {getattr(route, "path", "") for router in routers for route in router.routes}
    # Static files have no route template: name them, so their requests are not counted as unmatched.
    known_routes |= {f"{queue.STATIC_PREFIX}/{asset.name}" for asset in queue.STATIC_DIR.iterdir()}
    known_routes |= {f"{docs.DOCS_ASSETS_PREFIX}/{asset.name}" for asset in docs.DOCS_ASSETS_DIR.iterdir()}
    app.add_middleware(RequestContextMiddleware, metrics=service.metrics, known_routes=known_routes)
    return app


def _log_config(level: str, log_format: str) -> dict[str, Any]:
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = {
        **LOGGING_CONFIG,
        "formatters": dict(LOGGING_CONFIG["formatters"]),
        "handlers": dict(LOGGING_CONFIG["handlers"]),
        "loggers": dict(LOGGING_CONFIG["loggers"]),
    }
    if log_format == "json":
        # uvicorn's own lines (start-up, shutdown) in the same one-object-per-line format as ours.
        config["formatters"]["default"] = {"()": "serving.api.middleware.JsonLogFormatter"}
    config["loggers"]["raqib"] = {"handlers": ["default"], "level": level, "propagate": False}
    return config


def run(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    settings_file: str | Path | None = None,
    proxy_headers: bool = True,
    forwarded_allow_ips: str | None = None,
) -> None:
    """Serve the API with uvicorn (what `raqib serve` calls).

    Behind a reverse proxy, `forwarded_allow_ips` names the proxies whose X-Forwarded-For/-Proto are
    believed (uvicorn's default: $FORWARDED_ALLOW_IPS, else 127.0.0.1); the access log then shows the
    reader's address, not the proxy's.
    """
    import uvicorn

    if settings_file is not None:
        # Workers are fresh processes that call create_app() with no arguments: the environment
        # is the one channel that reaches them.
        os.environ[SETTINGS_FILE_ENV] = str(Path(settings_file).resolve())
    settings = load_settings()  # fail here, once, on bad settings rather than in every worker
    uvicorn.run(
        "serving.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # Our own access line (route template, status, duration, request id) replaces uvicorn's.
        access_log=False,
        http="serving.api.http:NoDelayHTTPProtocol",
        log_config=_log_config(settings.log_level, settings.log_format),
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips,
    )
