"""Moderators' login for the queue: name:key pairs, HMAC-signed session cookies, CSRF tokens.

A session cookie is `base64url(name).expiry.hex(HMAC-SHA256(secret, "name|expiry"))`: stateless, so
any worker holding the same secret accepts it, and nothing is stored server-side. The CSRF token
is an HMAC of the cookie value, so a page can only act with the session it was rendered for.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from serving.services.errors import ApiError
from serving.settings import Settings

logger = logging.getLogger("raqib.queue")

SESSION_COOKIE = "raqib_session"
LOGIN_COOKIE = "raqib_login"
CSRF_HEADER = "X-Raqib-CSRF"
BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_DERIVATION_LABEL = b"raqib queue session v1"


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Moderator:
    """Who is acting on the queue, and how they proved it."""

    name: str
    via: Literal["session", "bearer"]
    csrf: str | None = None


class QueueAuth:
    """The moderators' keys and the session signer of one app."""

    def __init__(self, moderators: dict[str, str], secret: bytes, max_age: int):
        self._keys = {name: key.encode("utf-8") for name, key in moderators.items()}
        self._secret = secret
        self.max_age = max_age

    @property
    def enabled(self) -> bool:
        """True when at least one moderator key is configured."""
        return bool(self._keys)

    def check_login(self, name: str, key: str) -> bool:
        """Constant-time check of a name and key pair."""
        expected = self._keys.get(name.strip())
        # Compare against a dummy for unknown names so the time taken does not reveal which names exist.
        matched = hmac.compare_digest(key.encode("utf-8"), expected or b"\0" * 32)
        return matched and expected is not None

    def moderator_for_key(self, key: str) -> str | None:
        """The moderator whose key this is (every key compared, no early exit), or None."""
        presented = key.encode("utf-8")
        found = None
        for name, expected in self._keys.items():
            if hmac.compare_digest(presented, expected):
                found = name
        return found

    def _signature(self, name: str, expiry: int) -> str:
        message = f"{name}|{expiry}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def issue(self, name: str, now: float | None = None) -> str:
        """A session cookie value for `name`, valid for `max_age` seconds."""
        expiry = int(now if now is not None else time.time()) + self.max_age
        return f"{_b64encode(name.encode('utf-8'))}.{expiry}.{self._signature(name, expiry)}"

    def verify(self, value: str, now: float | None = None) -> str | None:
        """The moderator's name from a valid, unexpired cookie of a still-configured moderator, else None."""
        parts = value.split(".")
        # ASCII digits only, and few: "²".isdigit() is true but int() refuses it, as it does 5000 digits.
        if len(parts) != 3 or not (len(parts[1]) <= 20 and parts[1].isascii() and parts[1].isdigit()):
            return None
        try:
            name = _b64decode(parts[0]).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        expiry = int(parts[1])
        if not hmac.compare_digest(parts[2], self._signature(name, expiry)):
            return None
        if expiry <= (now if now is not None else time.time()):
            return None
        # A moderator removed from the settings loses their sessions at the next restart.
        return name if name in self._keys else None

    def csrf_token(self, session_value: str) -> str:
        """The CSRF token bound to one session cookie."""
        return hmac.new(self._secret, b"csrf|" + session_value.encode("ascii"), hashlib.sha256).hexdigest()

    def session_moderator(self, request: Request) -> Moderator | None:
        """The moderator of the request's session cookie, or None."""
        value = request.cookies.get(SESSION_COOKIE)
        if not value or not value.isascii():
            return None
        name = self.verify(value)
        if name is None:
            return None
        return Moderator(name=name, via="session", csrf=self.csrf_token(value))


def session_secret(settings: Settings, admin_key: str | None) -> bytes:
    """The secret that signs sessions: `session_secret`, else derived from the admin key, else random."""
    if settings.session_secret is not None and settings.session_secret.get_secret_value():
        return settings.session_secret.get_secret_value().encode("utf-8")
    if admin_key:
        # Derived rather than the admin key itself, so a leaked session signature says nothing about it.
        return hmac.new(admin_key.encode("utf-8"), _DERIVATION_LABEL, hashlib.sha256).digest()
    return secrets.token_bytes(32)


def build_queue_auth(settings: Settings, admin_key: str | None) -> QueueAuth:
    """The queue's login checker from settings (called once, in create_app)."""
    moderators = settings.resolved_moderator_keys()
    explicit = settings.session_secret is not None and bool(settings.session_secret.get_secret_value())
    if moderators and not explicit and not admin_key:
        logger.warning(
            "no session_secret or admin_key: queue logins are signed with a random per-process secret, "
            "so they end when the process restarts and do not carry across workers"
        )
    return QueueAuth(moderators, session_secret(settings, admin_key), settings.session_max_age)


def new_login_token() -> str:
    """A random token for the login form's double-submit cookie."""
    return secrets.token_urlsafe(24)


def tokens_match(presented: str | None, expected: str | None) -> bool:
    """Constant-time equality of two tokens, False when either is missing."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


# --- FastAPI dependencies ----------------------------------------------------------------------

_moderator_bearer = HTTPBearer(
    auto_error=False, scheme_name="ModeratorKey", description="A moderator key (moderator_keys)."
)
ModeratorBearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_moderator_bearer)]


async def get_queue_auth(request: Request) -> QueueAuth:
    """The app's queue login checker."""
    auth: QueueAuth = request.app.state.queue_auth
    return auth


QueueAuthDep = Annotated[QueueAuth, Depends(get_queue_auth)]


def _queue_disabled() -> ApiError:
    return ApiError(
        403, "queue_disabled", "the queue is disabled: no moderator keys configured (moderator_keys)"
    )


async def require_moderator(
    request: Request, auth: QueueAuthDep, credentials: ModeratorBearerDep
) -> Moderator:
    """The moderator behind a session cookie or `Authorization: Bearer <moderator key>`; else 401."""
    if not auth.enabled:
        raise _queue_disabled()
    if credentials is not None:
        # A bearer key, when sent, decides alone: a wrong one is not rescued by a cookie.
        name = auth.moderator_for_key(credentials.credentials)
        if name is None:
            raise ApiError(401, "unauthorized", "invalid moderator key", headers=BEARER_CHALLENGE)
        return Moderator(name=name, via="bearer")
    moderator = auth.session_moderator(request)
    if moderator is None:
        raise ApiError(
            401,
            "unauthorized",
            "log in at /queue/login or send Authorization: Bearer <moderator key>",
            headers=BEARER_CHALLENGE,
        )
    return moderator


ModeratorDep = Annotated[Moderator, Depends(require_moderator)]


async def require_moderator_csrf(request: Request, moderator: ModeratorDep) -> Moderator:
    """`require_moderator`, plus the X-Raqib-CSRF header for cookie sessions (bearer keys need none)."""
    if moderator.via == "session" and not tokens_match(request.headers.get(CSRF_HEADER), moderator.csrf):
        raise ApiError(403, "csrf_failed", f"missing or wrong {CSRF_HEADER} header; reload the queue page")
    return moderator


ActingModeratorDep = Annotated[Moderator, Depends(require_moderator_csrf)]
