"""Typed service settings: RAQIB_* environment variables over an optional TOML file over defaults.

Nothing here runs at import time; `load_settings()` is called inside `create_app()`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from serving.schema import DEFAULT_BUNDLE_DIR, ModelUriError, parse_model_uri

ENV_PREFIX = "RAQIB_"
SETTINGS_FILE_ENV = "RAQIB_SETTINGS_FILE"
# A directory of one-file-per-setting secrets (Docker/Kubernetes style): raqib_api_keys, raqib_store_url, ...
SECRETS_DIR_ENV = "RAQIB_SECRETS_DIR"
_ORIGIN = re.compile(r"https?://[^/\s?#]+")

Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class SettingsError(ValueError):
    """Settings that cannot be used: a named file is missing or unreadable."""


class RateLimit(BaseModel):
    """A token bucket per API key: `per_second` requests on average, up to `burst` in a row."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # Generous on purpose: one worker scores a few hundred comments a second, and a CMS posting every
    # new comment rarely needs more than a few a second; backfills belong in /v1/score/batch.
    per_second: float = Field(default=50.0, gt=0)
    burst: int = Field(default=200, ge=1)


# A host name or IP literal, or "*." and a domain: no scheme, port, path or credentials.
_HOST_PATTERN = re.compile(r"(\*\.)?[\w.-]+|\[[0-9a-fA-F:.]+\]")


class SitePolicy(BaseModel):
    """Per-site moderation policy: threshold overrides, trusted authors, enforce/observe mode, rate limit."""

    model_config = ConfigDict(extra="forbid")

    reject_at: dict[str, Probability] = Field(default_factory=dict)
    review_at: dict[str, Probability] = Field(default_factory=dict)
    trusted_authors: list[str] = Field(default_factory=list)
    mode: Literal["enforce", "observe"] = "enforce"
    # Replaces the global `rate_limit` for requests naming this site, in a bucket of their own per key.
    rate_limit: RateLimit | None = None
    # Opt-in: when a comment names an article URL Raqib has not stored, fetch the page itself, but
    # only from these hosts ("news.example", or "*.news.example" for its subdomains).
    article_hosts: list[str] = Field(default_factory=list)
    # Off unless the site's pages really live on a private network: stops a URL in a request from
    # reaching the intranet, loopback or a cloud metadata address through Raqib (SSRF).
    article_private_addresses: bool = False

    @field_validator("article_hosts")
    @classmethod
    def _bare_hosts(cls, hosts: list[str]) -> list[str]:
        # Checked when settings load, not at the first fetch: a URL or a port here is a typo.
        for host in hosts:
            if not _HOST_PATTERN.fullmatch(host.strip()):
                raise ValueError(
                    f"article_hosts: {host!r} is not a host name ('news.example' or '*.news.example')"
                )
        return [host.strip().lower() for host in hosts]


def _split_keys(value: Any) -> Any:
    """Accept 'a,b' (environment), one per line (a secrets file) as well as ['a', 'b'] (TOML)."""
    if isinstance(value, str):
        return [part.strip() for part in re.split(r"[,\n]", value) if part.strip()]
    return value


def _read_secret_lines(path: Path, what: str) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


class Settings(BaseSettings):
    """Everything the scoring service can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        # `model_dir` and `model_uri` are our names, not pydantic's "model_" namespace.
        protected_namespaces=(),
    )

    model_dir: Path = DEFAULT_BUNDLE_DIR
    model_uri: str | None = None
    # The MLflow tracking server that `models:/` URIs are fetched from over HTTP (RAQIB_REGISTRY_URL,
    # else MLflow's own MLFLOW_TRACKING_URI); the server never imports mlflow.
    registry_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("RAQIB_REGISTRY_URL", "MLFLOW_TRACKING_URI", "registry_url"),
    )
    # The challenger scored beside the champion (shadow mode); its verdicts never reach the caller.
    shadow_model_dir: Path | None = None
    shadow_model_uri: str | None = None
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    api_keys_file: Path | None = None
    admin_key: SecretStr | None = None
    admin_key_file: Path | None = None
    state_dir: Path = Path("var")
    require_auth_for_health: bool = False
    max_text_chars: int = Field(default=10_000, gt=0)
    # Article-side features kept per model (serving/features/article_cache.py): at most this many
    # articles and about this many MB; 0 entries computes every article afresh on every call.
    article_cache_entries: int = Field(default=4096, ge=0)
    article_cache_mb: float = Field(default=128.0, ge=0)
    max_batch_items: int = Field(default=1000, gt=0)
    # /v1/score: comments waiting for the model at the same time are scored in one call of at most
    # this many (serving/runtime/batcher.py); 1 scores every request alone.
    score_batch_max: int = Field(default=16, ge=1)
    max_body_bytes: int = Field(default=65_536, gt=0)
    max_batch_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # "json": one JSON object per line (for log shippers); "text": the classic one-line format.
    log_format: Literal["json", "text"] = "json"
    sites: dict[str, SitePolicy] = Field(default_factory=dict)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    # Browser origins allowed to call the API (CORS); none by default, so no CORS headers at all.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # FastAPI's native OpenTelemetry spans, metrics and logs per request, for a process that has an
    # OpenTelemetry SDK configured (e.g. run under `opentelemetry-instrument`). Off by default: the
    # product's own signals are /metrics and the access log, and with it on FastAPI looks up the
    # global providers (three environment reads) on every request even when none is configured.
    opentelemetry: bool = False
    # A SecretStr because database URLs carry passwords (postgresql+psycopg://user:pass@host/db).
    store_url: SecretStr | None = None
    coral_secrets: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    webhook_secret: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    max_article_body_bytes: int = Field(default=1024 * 1024, gt=0)
    coral_timeout_ms: int = Field(default=150, gt=0)
    # Coral's GraphQL API (https://<coral host>/api/graphql) and a personal access token of a
    # MODERATOR or ADMIN user: story titles, comment bodies and moderators' reasons come from it.
    coral_graphql_url: str | None = None
    coral_token: SecretStr | None = None
    coral_token_file: Path | None = None
    coral_graphql_timeout_s: float = Field(default=5.0, gt=0)
    # Coral unreachable: a kept event is retried after base, 2×base, 4×base, ... up to max seconds.
    coral_retry_base_s: float = Field(default=30.0, gt=0)
    coral_retry_max_s: float = Field(default=3600.0, gt=0)
    # Article pages fetched for sites that allow it (SitePolicy.article_hosts).
    article_fetch_timeout_s: float = Field(default=5.0, gt=0)
    article_fetch_max_bytes: int = Field(default=2_000_000, gt=0)
    # A fetched article (from Coral or its page) is fetched again after this long; one that could not
    # be fetched is not tried again for `article_retry_s`.
    article_ttl_s: float = Field(default=24 * 3600.0, gt=0)
    article_retry_s: float = Field(default=300.0, gt=0)
    # The moderators' queue (/queue): "name:key" pairs, and how its login sessions are signed.
    moderator_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    moderator_keys_file: Path | None = None
    session_secret: SecretStr | None = None
    session_max_age: int = Field(default=12 * 3600, gt=0)

    _split_lists = field_validator("api_keys", "coral_secrets", "webhook_secret", mode="before")(_split_keys)
    _split_moderator_keys = field_validator("moderator_keys", mode="before")(_split_keys)
    _split_origins = field_validator("cors_origins", mode="before")(_split_keys)

    @field_validator("cors_origins")
    @classmethod
    def _exact_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            # A browser sends "https://host[:port]": a path or trailing slash would never match, and
            # "*" would let every web page call the API.
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"cors_origins entry {origin!r} is not an origin like https://cms.example.com"
                )
        return origins

    @field_validator("model_uri", "shadow_model_uri")
    @classmethod
    def _registry_uri_only(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            try:
                parse_model_uri(value)
            except ModelUriError:
                raise ValueError(
                    f"{info.field_name} must look like models:/NAME@ALIAS or models:/NAME/VERSION"
                ) from None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Precedence: arguments, RAQIB_* variables, files in RAQIB_SECRETS_DIR, the TOML file, defaults."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        secrets_dir = os.environ.get(SECRETS_DIR_ENV)
        if secrets_dir:
            if not Path(secrets_dir).is_dir():
                raise SettingsError(f"{SECRETS_DIR_ENV}={secrets_dir} does not name a directory")
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir))
        settings_file = os.environ.get(SETTINGS_FILE_ENV)
        if settings_file:
            path = Path(settings_file)
            if not path.is_file():
                raise SettingsError(f"{SETTINGS_FILE_ENV}={settings_file} does not name a file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    def resolved_api_keys(self) -> tuple[str, ...]:
        """All accepted API keys: `api_keys` plus the lines of `api_keys_file`."""
        keys = [key.get_secret_value() for key in self.api_keys if key.get_secret_value()]
        if self.api_keys_file is not None:
            keys.extend(_read_secret_lines(self.api_keys_file, "api_keys"))
        return tuple(dict.fromkeys(keys))

    def resolved_coral_secrets(self) -> tuple[bytes, ...]:
        """Coral's signing secrets (several during a rotation)."""
        return tuple(s.get_secret_value().encode("utf-8") for s in self.coral_secrets if s.get_secret_value())

    def resolved_coral_token(self) -> str | None:
        """Coral's access token from `coral_token` or the first line of `coral_token_file`."""
        if self.coral_token is not None and self.coral_token.get_secret_value().strip():
            return self.coral_token.get_secret_value().strip()
        if self.coral_token_file is not None:
            lines = _read_secret_lines(self.coral_token_file, "coral_token")
            return lines[0] if lines else None
        return None

    def resolved_webhook_secrets(self) -> tuple[bytes, ...]:
        """The generic webhook's signing secrets (several during a rotation)."""
        return tuple(
            s.get_secret_value().encode("utf-8") for s in self.webhook_secret if s.get_secret_value()
        )

    def resolved_admin_key(self) -> str | None:
        """The admin key from `admin_key` or the first line of `admin_key_file` (None if neither)."""
        if self.admin_key is not None and self.admin_key.get_secret_value():
            return self.admin_key.get_secret_value()
        if self.admin_key_file is not None:
            lines = _read_secret_lines(self.admin_key_file, "admin_key")
            return lines[0] if lines else None
        return None

    def resolved_moderator_keys(self) -> dict[str, str]:
        """Moderator name → key, from `moderator_keys` and the lines of `moderator_keys_file`."""
        entries = [key.get_secret_value() for key in self.moderator_keys if key.get_secret_value()]
        if self.moderator_keys_file is not None:
            entries.extend(_read_secret_lines(self.moderator_keys_file, "moderator_keys"))
        keys: dict[str, str] = {}
        for number, entry in enumerate(entries, start=1):
            # Never quote the entry: it holds a key.
            name, separator, key = entry.partition(":")
            name, key = name.strip(), key.strip()
            if not separator or not name or not key:
                raise SettingsError(f"moderator key entry {number} is not 'name:key'")
            if name in keys:
                raise SettingsError(f"moderator {name!r} is listed twice")
            if key in keys.values():
                raise SettingsError(f"moderator {name!r} shares a key with another moderator")
            keys[name] = key
        return keys


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment and RAQIB_SETTINGS_FILE (keyword arguments win)."""
    return Settings(**overrides)
