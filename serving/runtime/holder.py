"""The model currently serving, held as one immutable snapshot that reloads replace atomically."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

from serving.features.article_cache import ArticleCache
from serving.model.bundle import BundleError, read_bundle_metadata
from serving.model.moderation import CommentInput, ModerationModel
from serving.runtime.loaded import LoadedModel, ShadowSlot
from serving.runtime.policy import resolve_sites, unknown_labels
from serving.runtime.registry import fetch_registered_bundle
from serving.runtime.shadow import ShadowTracker
from serving.settings import Settings

logger = logging.getLogger("raqib.model")


class ModelHolder:
    """Holds the current `LoadedModel`; readers take `current` once per request, reloads swap it.

    Reads need no lock: replacing one attribute with a new, fully built object is atomic in
    CPython, so a request sees the old model or the new one, never a mix. Reloads are serialised
    by a lock so two of them cannot interleave their load-then-swap.
    """

    def __init__(self, settings: Settings):
        self._settings = settings
        self._current: LoadedModel | None = None
        self._shadow: ShadowSlot | None = None
        self._reload_lock = threading.Lock()
        self.load_error: str | None = None
        self.shadow_tracker = ShadowTracker()

    def _article_cache(self) -> ArticleCache:
        """A new model's own article cache, sized by the settings."""
        settings = self._settings
        return ArticleCache(settings.article_cache_entries, int(settings.article_cache_mb * 1024 * 1024))

    @property
    def current(self) -> LoadedModel | None:
        """The model serving now (None until one has loaded)."""
        return self._current

    @property
    def shadow(self) -> ShadowSlot | None:
        """The shadow model's slot (None when shadow mode is not configured)."""
        return self._shadow

    def load(self) -> LoadedModel:
        """Load the configured bundle and swap it in; on failure keep the old one and raise BundleError."""
        with self._reload_lock:
            # The shadow reloads with the champion; it never raises, so it cannot stop the champion.
            self._load_shadow()
            try:
                bundle_dir = resolve_bundle_dir(self._settings)
                model = ModerationModel.from_bundle(bundle_dir, self._article_cache())
                warm_up(model)
            except BundleError as exc:
                self.load_error = str(exc)
                raise
            except Exception as exc:  # unreadable files, a pickle of the wrong shape, ...
                self.load_error = f"{exc.__class__.__name__}: {exc}"
                raise BundleError(self.load_error) from exc
            problems = unknown_labels(self._settings.sites, model.labels)
            for site, labels in problems.items():
                logger.warning(
                    "site %r overrides thresholds of labels the model lacks: %s", site, ", ".join(labels)
                )
            loaded = LoadedModel(
                model=model,
                bundle_path=bundle_dir.resolve(),
                loaded_at=datetime.now(UTC),
                sites=resolve_sites(model.thresholds, self._settings.sites),
            )
            self._current = loaded
            self.load_error = None
            return loaded

    def _load_shadow(self) -> None:
        """Load the shadow bundle if one is configured; failures are logged and kept, never raised."""
        settings = self._settings
        if settings.shadow_model_dir is None and settings.shadow_model_uri is None:
            return
        bundle_dir: Path | None = None
        try:
            bundle_dir = resolve_shadow_dir(settings)
            model = ModerationModel.from_bundle(bundle_dir, self._article_cache())
            warm_up(model)
            loaded = LoadedModel(
                model=model,
                bundle_path=bundle_dir.resolve(),
                loaded_at=datetime.now(UTC),
                sites=resolve_sites(model.thresholds, settings.sites),
            )
        except Exception as exc:  # whatever breaks the challenger, the champion serves on
            error = str(exc) if isinstance(exc, BundleError) else f"{exc.__class__.__name__}: {exc}"
            # Like the champion, a shadow that loaded before keeps being compared until a reload works.
            kept = self._shadow.loaded if self._shadow is not None else None
            name, version = (kept.name, kept.version) if kept is not None else _bundle_identity(bundle_dir)
            self._shadow = ShadowSlot(loaded=kept, error=error, name=name, version=version)
            still = f"; still comparing with {kept.name} {kept.version}" if kept else ""
            logger.error("shadow model not loaded (the champion serves as usual%s): %s", still, error)
            return
        self._shadow = ShadowSlot(loaded=loaded, error=None, name=loaded.name, version=loaded.version)
        logger.info("shadow model %s %s loaded from %s", loaded.name, loaded.version, loaded.bundle_path)


WARM_UP_TEXT = "تعليق تجريبي للتحقق من النموذج 0551234567 www.example.com"


def warm_up(model: ModerationModel) -> None:
    """Score one comment so a broken pickle fails the load, and lazy caches fill before traffic."""
    try:
        model.score([CommentInput(text=WARM_UP_TEXT, article_title="عنوان", article_text="نص الخبر")])
    except Exception as exc:
        raise BundleError(f"model loaded but cannot score: {exc.__class__.__name__}: {exc}") from None


def resolve_bundle_dir(settings: Settings) -> Path:
    """The bundle directory to load: `model_dir`, or the registry model cached under `state_dir`."""
    if settings.model_uri:
        return fetch_registered_bundle(settings.model_uri, settings.registry_url, settings.state_dir)
    return settings.model_dir


def resolve_shadow_dir(settings: Settings) -> Path:
    """The shadow bundle directory: `shadow_model_dir`, or `shadow_model_uri` cached like `model_uri`."""
    if settings.shadow_model_uri:
        return fetch_registered_bundle(settings.shadow_model_uri, settings.registry_url, settings.state_dir)
    if settings.shadow_model_dir is None:
        raise BundleError("no shadow model configured")
    return settings.shadow_model_dir


def _bundle_identity(bundle_dir: Path | None) -> tuple[str | None, str | None]:
    """Name and version from a bundle's metadata even when the bundle cannot load (None if unreadable)."""
    if bundle_dir is None:
        return None, None
    try:
        metadata = read_bundle_metadata(bundle_dir)
    except BundleError:
        return None, None
    return str(metadata["name"]), str(metadata["version"])
