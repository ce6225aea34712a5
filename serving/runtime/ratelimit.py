"""Per-key rate limiting: a token bucket per (caller, site), kept in this process's memory.

Every authenticated caller (an API key, or a signed integration such as Coral) has a bucket of
`burst` tokens that refills at `per_second`; a request takes one token, and a request that finds
none is refused with how long until one is back. A site with its own `rate_limit` gets a bucket
of its own per caller; requests naming any other site (or none) share the caller's default bucket,
so inventing site names buys no extra budget.

Buckets live in one process: with N workers (or N replicas) a caller may get up to N times the
configured rate. Enforce a hard global limit in a shared store or at the proxy if that matters.
Buckets exist only for callers that passed authentication, so their number is bounded by the
configured keys times the configured sites.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from serving.settings import RateLimit, Settings

DEFAULT_POLICY = "default"


@dataclass(frozen=True)
class RateDecision:
    """The outcome of taking a token: allowed or not, and what to tell the caller."""

    allowed: bool
    limit: int
    remaining: int
    retry_after: int
    policy: str

    def headers(self) -> dict[str, str]:
        """RateLimit-Limit / RateLimit-Remaining, plus Retry-After (whole seconds, ≥ 1) when refused."""
        headers = {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining)}
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float):
        self.tokens = tokens
        self.updated = updated


def caller_id(secret: str | bytes) -> str:
    """A stable name for a caller's bucket that is not the key itself (buckets may be inspected)."""
    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    return "key:" + hashlib.sha256(raw).hexdigest()[:16]


class RateLimiter:
    """Token buckets per (caller, site) under a default limit and per-site overrides."""

    def __init__(
        self,
        default: RateLimit,
        sites: Mapping[str, RateLimit] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.default = default
        self.sites = dict(sites or {})
        # Injectable so tests can move time forward instead of sleeping.
        self.clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        """The limiter the settings describe: `rate_limit`, and each site's `rate_limit` override."""
        sites = {name: policy.rate_limit for name, policy in settings.sites.items() if policy.rate_limit}
        return cls(settings.rate_limit, sites)

    def policy_for(self, site: str | None) -> tuple[str, RateLimit]:
        """The name and limit that govern requests for `site`."""
        if site is not None and site in self.sites:
            return site, self.sites[site]
        return DEFAULT_POLICY, self.default

    def take(self, caller: str, site: str | None = None) -> RateDecision | None:
        """Spend one token of the caller's bucket for this site; None when that limit is switched off."""
        policy, limit = self.policy_for(site)
        if not limit.enabled:
            return None
        key = (caller, policy)
        with self._lock:
            now = self.clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(float(limit.burst), now)
            else:
                # max(0, ...): a clock that stepped back must not drain the bucket.
                elapsed = max(0.0, now - bucket.updated)
                bucket.tokens = min(float(limit.burst), bucket.tokens + elapsed * limit.per_second)
                bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return RateDecision(True, limit.burst, math.floor(bucket.tokens), 0, policy)
            wait = (1.0 - bucket.tokens) / limit.per_second
        return RateDecision(False, limit.burst, 0, max(1, math.ceil(wait)), policy)
