"""The service container: how handlers and services reach the model, the store and the rate limits."""

from __future__ import annotations

from dataclasses import dataclass

from serving.model.moderation import Scored
from serving.runtime.batcher import Batcher
from serving.runtime.holder import ModelHolder
from serving.runtime.loaded import LoadedModel
from serving.runtime.metrics import ServiceMetrics
from serving.runtime.ratelimit import RateLimiter
from serving.services.remote import RemoteWork
from serving.services.schemas import ScoreRequest
from serving.settings import Settings
from serving.store.store import StoreHolder

# One /v1/score comment at a time in, scored with the comments that wait with it, under one model.
CommentBatcher = Batcher[LoadedModel, ScoreRequest, Scored]


@dataclass(frozen=True)
class Service:
    """Everything a request handler needs, built once by `create_app` and kept on `app.state`."""

    settings: Settings
    models: ModelHolder
    metrics: ServiceMetrics
    api_keys: tuple[bytes, ...]
    admin_key: bytes | None
    stores: StoreHolder
    rate_limiter: RateLimiter
    coral_secrets: tuple[bytes, ...] = ()
    webhook_secrets: tuple[bytes, ...] = ()
    # Articles and Coral decisions fetched off the request path (None: nothing is ever fetched).
    remote: RemoteWork | None = None
    # /v1/score's comments scored together (serving/runtime/batcher.py); None scores each alone.
    batcher: CommentBatcher | None = None

    @property
    def open_access(self) -> bool:
        """True when no API key is configured and the API answers anyone."""
        return not self.api_keys
