"""HMAC-SHA256 request signatures: Coral's `X-Coral-Signature` and Raqib's `X-Raqib-Signature`.

Both are checked over the raw request body, before it is parsed, and every comparison is
constant-time (`hmac.compare_digest`) with no early exit, so timing says nothing about which
secret or which candidate came close.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

CORAL_HEADER = "X-Coral-Signature"
RAQIB_HEADER = "X-Raqib-Signature"
TOLERANCE_SECONDS = 300  # a signed request older (or newer) than 5 minutes is refused


class SignatureError(Exception):
    """A missing, malformed, wrong or stale signature; `code` is the API error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def hmac_hex(secret: bytes, message: bytes) -> str:
    """Hex HMAC-SHA256 of `message` under `secret`."""
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def _is_unix_time(text: str) -> bool:
    return 0 < len(text) <= 20 and text.isascii() and text.isdigit()


def _any_matches(candidates: Sequence[str], secrets: Sequence[bytes], message: bytes) -> bool:
    matched = False
    for secret in secrets:
        expected = hmac_hex(secret, message).encode("ascii")
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate.strip().lower().encode("utf-8"))
    return matched


def sign_coral(body: bytes, secrets: Sequence[bytes]) -> str:
    """The `X-Coral-Signature` value Coral sends: `sha256=<hex>` per active secret, comma-separated."""
    return ",".join(f"sha256={hmac_hex(secret, body)}" for secret in secrets)


def verify_coral(body: bytes, header: str | None, secrets: Sequence[bytes]) -> None:
    """Accept when any `sha256=` value of the header is the HMAC of `body` under any of `secrets`."""
    if not header or not header.strip():
        raise SignatureError("missing_signature", f"missing {CORAL_HEADER} header")
    candidates = []
    for part in header.split(","):
        scheme, sep, value = part.strip().partition("=")
        if sep and scheme.strip().lower() == "sha256" and value.strip():
            candidates.append(value)
    if not candidates:
        raise SignatureError("invalid_signature", f"{CORAL_HEADER} has no sha256=<hex> value")
    if not _any_matches(candidates, secrets, body):
        raise SignatureError("invalid_signature", f"{CORAL_HEADER} does not match the request body")


def sign_raqib(body: bytes, secret: bytes, timestamp: int | None = None) -> str:
    """An `X-Raqib-Signature` value: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={hmac_hex(secret, f'{t}.'.encode() + body)}"


def verify_raqib(
    body: bytes,
    header: str | None,
    secrets: Sequence[bytes],
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> int:
    """Check `t=…,v1=…` (several v1 allowed while the sender rotates); returns the signed timestamp."""
    if not header or not header.strip():
        raise SignatureError("missing_signature", f"missing {RAQIB_HEADER} header")
    timestamps, candidates = [], []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            timestamps.append(value.strip())
        elif key == "v1" and value.strip():
            candidates.append(value)
    # ASCII digits only, and few: "²".isdigit() is true but int() refuses it, as it does 5000 digits.
    if len(timestamps) != 1 or not _is_unix_time(timestamps[0]) or not candidates:
        raise SignatureError("invalid_signature", f"{RAQIB_HEADER} must look like t=<unix seconds>,v1=<hex>")
    signed_at = int(timestamps[0])
    if not _any_matches(candidates, secrets, f"{signed_at}.".encode() + body):
        raise SignatureError("invalid_signature", f"{RAQIB_HEADER} does not match the request body")
    skew = abs((time.time() if now is None else now) - signed_at)
    if skew > tolerance:
        raise SignatureError(
            "stale_signature",
            f"signature timestamp is {int(skew)} s away from the server's clock; the limit is {tolerance} s",
        )
    return signed_at
