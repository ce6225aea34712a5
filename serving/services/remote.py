"""Work that needs another server, kept off every request's path: articles Raqib has not stored, and
Coral's decisions, which arrive as ids and need Coral's GraphQL API to become labels.

Two mechanisms, because their failures cost different things:
- `ArticleFinder`: a comment names an article Raqib lacks (Coral's phase sends a story id and URL,
  never a title). The comment is scored at once with what is known, and the article is fetched on a
  background thread (Coral's `story(id)`, and the page itself for sites that allow its host), then
  stored for the next comments. A failed fetch is only remembered for `article_retry_s`: the next
  comment on the story asks again.
- `CoralJobs`: Coral's webhook events (a story created, a comment held, a moderator's decision) are
  written to the store as jobs in the same transaction that records the event, and a worker thread
  runs them. A job whose call to Coral fails stays, with a growing delay, until Coral answers:
  never lost. A decision becomes feedback at most once (marked by Coral's moderation-action id in the
  event table, in the same transaction), so retries and repeated events cannot add a label twice.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from serving.remote.coral import CoralCommentInfo, CoralGraphQL, CoralStoryInfo, CoralUnavailable
from serving.remote.pages import FetchedPage, PagePolicy, PageRefused, fetch_article_page
from serving.schema import ABUSIVE, OFF_TOPIC, ON_TOPIC, SPAM
from serving.settings import Settings
from serving.store.errors import DuplicateEvent, StoreConflict, StoreError
from serving.store.records import Article, FeedbackEntry, RemoteJob
from serving.store.store import Store, StoreHolder
from serving.text.html import html_to_text

logger = logging.getLogger("raqib.remote")

# Job kinds (remote_jobs.kind).
STORY_JOB = "coral_story"  # STORY_CREATED: fetch the story's title and description
COMMENT_JOB = "coral_comment"  # a held comment: give Raqib's audit row Coral's comment id
DECISION_JOB = "coral_decision"  # a moderator's decision: link, then record the label
DECISION_EVENTS = "coral-decision"  # event-table source marking a decision already recorded

# Article sources written by the finder; articles sent by a CMS (PUT /v1/articles, webhooks) are never
# fetched again, these are once they are older than `article_ttl_s`.
FETCHED_SOURCES = frozenset({"coral", "page", "coral+page"})

# Coral's REJECTION_REASON_CODE (schema.graphql) → Raqib's label. Reasons that say nothing about
# which of Raqib's labels applies (ILLEGAL_CONTENT, MISINFORMATION, BANNED_WORD, OTHER) map to none:
# the verdict is recorded, but not exported for training.
REJECTION_LABELS = {
    "IRRELEVANT_CONTENT": OFF_TOPIC,
    "SPAM": SPAM,
    "AD": SPAM,
    "ABUSIVE": ABUSIVE,
    "OFFENSIVE": ABUSIVE,
    "HARASSMENT_BULLYING": ABUSIVE,
    "HATE_SPEECH": ABUSIVE,
}
VERDICT_STATUSES = frozenset({"APPROVED", "REJECTED"})

_SPACES = re.compile(r"\s+")


def coral_comment_key(story_id: str | None, author_id: str | None, text: str) -> str:
    """A provisional comment id for a Coral comment, from what both the phase and GraphQL know.

    Coral's External Moderation Phase sends no comment id; its later events name the comment by id.
    Story, author and the comment's plain text (whitespace folded, so Coral's own HTML stripping and
    ours agree) are the join: the comment fetched by id gives the same key as the phase request did.
    """
    folded = _SPACES.sub(" ", text).strip()
    digest = hashlib.sha256(f"{story_id or ''}\n{author_id or ''}\n{folded}".encode()).hexdigest()
    return f"coral:{digest[:24]}"


def decision_label(status: str, rejection_code: str | None, raqib_label: str | None) -> str | None:
    """The training label for a moderator's final status in Coral (None: recorded, never exported)."""
    if status == "APPROVED":
        # Approved is acceptable under this story: the most valuable label when Raqib had held it.
        return ON_TOPIC
    if status != "REJECTED":
        return None
    if rejection_code:
        return REJECTION_LABELS.get(rejection_code.upper())
    # No reason given (Coral asks for one only with DSA features on): a rejection of a comment Raqib
    # held confirms Raqib's label; any other rejection's reason is unknown, and guessing one would
    # teach the model a wrong label.
    return raqib_label


def _utc(now: float | None = None) -> datetime:
    return datetime.fromtimestamp(time.time() if now is None else now, UTC)


class ArticleFinder:
    """Fetches articles named by comments but not stored, on background threads, and stores them."""

    def __init__(
        self,
        settings: Settings,
        stores: StoreHolder,
        coral: CoralGraphQL | None,
        fetch_page: Callable[[str, PagePolicy], FetchedPage] = fetch_article_page,
    ):
        self._settings = settings
        self._stores = stores
        self._coral = coral
        self._fetch_page = fetch_page
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="raqib-articles")
        self._lock = threading.Lock()
        self._in_flight: set[tuple[str, str]] = set()
        self._failed_until: dict[tuple[str, str], float] = {}
        self._closed = False

    def close(self) -> None:
        """Stop taking work; fetches already running finish on their own threads."""
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)

    def page_policy(self, site: str | None) -> PagePolicy | None:
        """The site's fetch policy, or None when it fetches no pages (the default)."""
        policy = self._settings.sites.get(site or "")
        if policy is None or not policy.article_hosts:
            return None
        return PagePolicy(
            allowed_hosts=tuple(policy.article_hosts),
            allow_private=policy.article_private_addresses,
            max_bytes=self._settings.article_fetch_max_bytes,
            timeout_s=self._settings.article_fetch_timeout_s,
        )

    def can_fetch(self, site: str | None, article_id: str | None, url: str | None, via_coral: bool) -> bool:
        """Whether any source could give this article."""
        if via_coral and self._coral is not None and article_id:
            return True
        policy = self.page_policy(site) if url else None
        try:
            host = (urlsplit(url or "").hostname or "").rstrip(".")
        except ValueError:
            return False
        return policy is not None and bool(host) and policy.allows_host(host)

    def is_stale(self, article: Article) -> bool:
        """A fetched article older than `article_ttl_s` (CMS-sent articles never are)."""
        if article.source not in FETCHED_SOURCES or article.updated_at is None:
            return False
        age = datetime.now(UTC) - article.updated_at
        return age.total_seconds() > self._settings.article_ttl_s

    def request(self, site: str | None, article_id: str | None, url: str | None, via_coral: bool) -> bool:
        """Fetch in the background unless already under way or recently failed; True when one is under way."""
        if self._closed or not self.can_fetch(site, article_id, url, via_coral):
            return False
        key = (site or "", article_id or f"url:{url}")
        now = time.monotonic()
        with self._lock:
            if key in self._in_flight:
                return True
            if self._failed_until.get(key, 0.0) > now:
                return False
            self._in_flight.add(key)
        try:
            self._executor.submit(self._fetch_and_store, key, site, article_id, url, via_coral)
        except RuntimeError:  # shut down meanwhile
            with self._lock:
                self._in_flight.discard(key)
            return False
        return True

    def fetch_now(self, site: str | None, article_id: str | None, url: str | None, via_coral: bool) -> bool:
        """Fetch and store on this thread (STORY_CREATED jobs); CoralUnavailable propagates for a retry."""
        article = self._fetch(site, article_id, url, via_coral)
        if article is None:
            return False
        store = self._stores.current
        if store is None:
            raise StoreError("no store to keep the article in")
        store.put_article(article, merge=True)
        return True

    def _fetch_and_store(
        self, key: tuple[str, str], site: str | None, article_id: str | None, url: str | None, via_coral: bool
    ) -> None:
        stored = False
        try:
            stored = self.fetch_now(site, article_id, url, via_coral)
        except (CoralUnavailable, StoreError) as exc:
            logger.warning("article %s of site %s not fetched: %s", key[1], site, exc)
        except Exception:  # a background thread has nobody to raise to
            logger.exception("article %s of site %s: fetch failed", key[1], site)
        finally:
            with self._lock:
                self._in_flight.discard(key)
                if not stored:
                    self._failed_until[key] = time.monotonic() + self._settings.article_retry_s
                    if len(self._failed_until) > 10_000:  # bounded: forget the oldest failures
                        for old in list(self._failed_until)[:5_000]:
                            del self._failed_until[old]

    def _fetch(
        self, site: str | None, article_id: str | None, url: str | None, via_coral: bool
    ) -> Article | None:
        story: CoralStoryInfo | None = None
        if via_coral and self._coral is not None and article_id:
            story = self._coral.story(article_id)
            url = url or (story.url if story else None)
        page: FetchedPage | None = None
        policy = self.page_policy(site) if url else None
        if url and policy is not None:
            try:
                page = self._fetch_page(url, policy)
            except PageRefused as exc:
                # Already logged with its reason by the fetcher; Coral's title may still do.
                logger.info("article page for %s not used: %s", article_id or url, exc.code)
        title = (story.title if story else None) or (page.title if page else None)
        text = (page.text if page else None) or (story.description if story else None)
        if not title and not text:
            return None
        source = "coral+page" if story and page else "coral" if story else "page"
        return Article(
            article_id=article_id or _url_article_id(url or ""),
            site=site,
            title=title,
            text=text,
            url=url,
            source=source,
        )


def _url_article_id(url: str) -> str:
    """An id for an article known only by its URL (a CMS that sends no article id)."""
    return "url:" + hashlib.sha256(url.strip().encode()).hexdigest()[:24]


class CoralJobs:
    """Runs Coral's webhook jobs from the store, on a worker thread, retrying while Coral is down."""

    def __init__(self, settings: Settings, stores: StoreHolder, coral: CoralGraphQL, finder: ArticleFinder):
        self._settings = settings
        self._stores = stores
        self._coral = coral
        self._finder = finder
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._run_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the worker thread (the app's lifespan does; tests may call `run_due` instead)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="raqib-coral-jobs", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the worker; waiting jobs stay in the store for the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def kick(self) -> None:
        """A job was queued: run due jobs now rather than at the next poll."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=min(5.0, self._settings.coral_retry_base_s))
            self._wake.clear()
            if self._stop.is_set():
                break
            store = self._stores.current
            if store is None:
                continue
            try:
                self.run_due(store)
            except StoreError as exc:
                logger.warning("coral jobs not run (store): %s", exc)
            except Exception:  # keep the worker alive whatever one pass hits
                logger.exception("coral jobs: unexpected failure")

    def run_due(self, store: Store, now: float | None = None) -> int:
        """Run every due job once; returns how many finished. Safe to call from any thread."""
        finished = 0
        with self._run_lock:
            for job in store.due_jobs(_utc(now), limit=100):
                try:
                    self._run(store, job)
                except CoralUnavailable as exc:
                    self._retry_later(store, job, str(exc), now)
                except StoreConflict:
                    # Another worker process recorded the same decision first: done.
                    with store.write() as writer:
                        writer.finish_job(job.id)
                    finished += 1
                except StoreError:
                    raise
                except Exception as exc:  # a bug or an odd answer: keep the job, say why
                    logger.exception("coral job %s %s failed", job.kind, job.ref)
                    self._retry_later(store, job, f"{type(exc).__name__}: {exc}", now)
                else:
                    finished += 1
        return finished

    def _retry_later(self, store: Store, job: RemoteJob, error: str, now: float | None) -> None:
        delay = min(self._settings.coral_retry_base_s * 2**job.attempts, self._settings.coral_retry_max_s)
        logger.warning(
            "coral job %s %s failed (attempt %d), retrying in %.0f s: %s",
            job.kind,
            job.ref,
            job.attempts + 1,
            delay,
            error,
        )
        store.job_failed(job.id, error, _utc(now) + timedelta(seconds=delay))

    def _run(self, store: Store, job: RemoteJob) -> None:
        if job.kind == STORY_JOB:
            self._finder.fetch_now(job.site, job.ref, job.detail, via_coral=True)
            with store.write() as writer:
                writer.finish_job(job.id)
            return
        comment = self._coral.comment(job.ref)
        if comment is None:
            logger.warning("coral comment %s is unknown to Coral (deleted?): job dropped", job.ref)
            with store.write() as writer:
                writer.finish_job(job.id)
            return
        self._record(store, job, comment)

    def _record(self, store: Store, job: RemoteJob, comment: CoralCommentInfo) -> None:
        # COMMENT_STATUS_UPDATED names no site (Subscription/commentStatusUpdated.ts): Coral's own
        # site id then, as the phase request used when no `?site=` maps it.
        site = job.site or comment.site_id
        text = html_to_text(comment.body)
        story = comment.story
        key = coral_comment_key(story.id if story else None, comment.author_id, text)
        if story is not None and story.title:
            current = store.get_article(story.id, site)
            if current is None or not current.title:
                store.put_article(
                    Article(
                        article_id=story.id,
                        site=site,
                        title=story.title,
                        text=story.description,
                        url=story.url,
                        source="coral",
                    ),
                    merge=True,
                )
        verdict = job.kind == DECISION_JOB and comment.status in VERDICT_STATUSES
        entry: FeedbackEntry | None = None
        marker = ""
        if verdict:
            action = comment.latest()
            marker = f"{site or ''}|{comment.id}|{action.id if action and action.id else comment.status}"
            if store.get_event(DECISION_EVENTS, marker) is None:
                raqib = held_label(store, site, comment.id, key)
                label = decision_label(comment.status, action.rejection_code if action else None, raqib)
                article = store.get_article(story.id, site) if story else None
                entry = FeedbackEntry(
                    comment_id=comment.id,
                    site=site,
                    label=label,
                    source="coral",
                    moderator=f"coral:{action.moderator_id}" if action and action.moderator_id else "coral",
                    text=text or None,
                    article_id=story.id if story else None,
                    article_title=article.title if article else None,
                    article_text=article.text if article else None,
                    # Kept even when it maps to no label: a later release may learn from it.
                    reason=action.rejection_code if action else None,
                )
        try:
            with store.write() as writer:
                linked = writer.link_comment(site, key, comment.id) if text else 0
                if entry is not None:
                    writer.add_feedback(entry)
                    writer.add_event(DECISION_EVENTS, marker, key, 200, {"label": entry.label})
                writer.finish_job(job.id)
        except DuplicateEvent:
            with store.write() as writer:
                writer.finish_job(job.id)
            return
        if linked:
            logger.info("coral comment %s linked to Raqib's score %s", comment.id, key)
        if entry is not None:
            logger.info("coral decision on %s recorded as %s", comment.id, entry.label or "no label")


def held_label(store: Store, site: str | None, *comment_ids: str) -> str | None:
    """The label Raqib last held the comment for, under the first of its ids that has one (Coral's
    id, then the provisional key)."""
    for comment_id in comment_ids:
        audits = store.audit_for(comment_id, site)
        decided = next((a.decided_label for a in reversed(audits) if a.decided_label), None)
        if decided is not None:
            return decided
    return None


class RemoteWork:
    """The finder and, when Coral's GraphQL API is configured, the job worker: built by the app."""

    def __init__(
        self,
        settings: Settings,
        stores: StoreHolder,
        coral: CoralGraphQL | None = None,
        fetch_page: Callable[[str, PagePolicy], FetchedPage] = fetch_article_page,
    ):
        self.coral = coral
        self.finder = ArticleFinder(settings, stores, coral, fetch_page)
        self.jobs = CoralJobs(settings, stores, coral, self.finder) if coral is not None else None

    @classmethod
    def from_settings(cls, settings: Settings, stores: StoreHolder) -> RemoteWork:
        """Coral's client when both its URL and token are set."""
        token = settings.resolved_coral_token()
        coral = None
        if settings.coral_graphql_url and token:
            coral = CoralGraphQL(settings.coral_graphql_url, token, settings.coral_graphql_timeout_s)
        elif settings.coral_graphql_url:
            logger.warning("coral_graphql_url is set without coral_token: Coral's API is not used")
        return cls(settings, stores, coral)

    def start(self) -> None:
        """Start the job worker, if any."""
        if self.jobs is not None:
            self.jobs.start()

    def close(self) -> None:
        """Stop the worker and the fetch threads."""
        if self.jobs is not None:
            self.jobs.stop()
        self.finder.close()
        if self.coral is not None:
            self.coral.close()
