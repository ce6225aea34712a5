"""Registry of public-corpus loaders and the deterministic build of one canonical JSONL."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from serving.schema import DEFAULT_LABELS
from training.data.contract import LabeledRecord, validate_record, write_jsonl
from training.data.datasets import (
    alakrot_youtube,
    aljazeera_deleted,
    aljazeera_levels,
    aoc,
    aoc_repaired,
    aoc_sentences,
    ar_spam_tweets,
    ar_tweet_accounts,
    darija_offensive,
    egyptian_tweets,
    fox_news,
    letmi,
    mac,
    mlma,
    mpold,
    msac,
    myc,
    omcd,
    omp,
    osact2020,
    saudi_hate,
    sectarian,
    semeval2015,
    sms_spam,
    youtube_spam,
)
from training.data.datasets.common import CorpusFileMissing

Loader = Callable[..., Iterator[LabeledRecord]]


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """One source: its loader, the corpus files it needs and what the records are for."""

    name: str
    loader: Loader
    files: tuple[str, ...]
    purpose: str  # "train", "constructed", "leakage_check"
    default: bool = True
    note: str = ""

    @property
    def seeded(self) -> bool:
        return "seed" in inspect.signature(self.loader).parameters

    def missing_files(self, root: Path) -> list[str]:
        return [f for f in self.files if not (root / f).is_file()]

    def load(self, root: Path, seed: int) -> Iterator[LabeledRecord]:
        if self.seeded:
            return self.loader(root, seed=seed)
        return self.loader(root)


SOURCES: dict[str, SourceSpec] = {
    spec.name: spec
    for spec in (
        SourceSpec("aoc", aoc.load_aoc, aoc.FILES, "train", note="real comment + its own article"),
        SourceSpec(
            "aoc_repaired",
            aoc_repaired.load_aoc_repaired,
            aoc.FILES,
            "constructed",
            note="CONSTRUCTED: AOC comment + another same-bucket article",
        ),
        SourceSpec(
            "semeval2015",
            semeval2015.load_semeval2015,
            semeval2015.FILES,
            "train",
            note="cQA answers; irrelevant = answer to another question",
        ),
        SourceSpec(
            "youtube_spam",
            youtube_spam.load_youtube_spam,
            youtube_spam.FILES,
            "train",
            note="English; no article",
        ),
        SourceSpec(
            "sms_spam", sms_spam.load_sms_spam, sms_spam.FILES, "train", note="English SMS; weight low"
        ),
        SourceSpec(
            "ar_spam_tweets",
            ar_spam_tweets.load_ar_spam_tweets,
            ar_spam_tweets.FILES,
            "train",
            note="spam only",
        ),
        SourceSpec(
            "ar_tweet_accounts",
            ar_tweet_accounts.load_ar_tweet_accounts,
            ar_tweet_accounts.FILES,
            "leakage_check",
            note="labels per ACCOUNT; leakage check only, not training",
        ),
        SourceSpec("mpold", mpold.load_mpold, mpold.FILES, "train", note="offensive or not; no article"),
        SourceSpec(
            "aljazeera_deleted",
            aljazeera_deleted.load_aljazeera_deleted,
            aljazeera_deleted.FILES,
            "train",
            note="abusive only; clean deletions excluded",
        ),
        SourceSpec(
            aljazeera_levels.SOURCE,
            aljazeera_levels.load_aljazeera_levels,
            aljazeera_levels.FILES,
            "train",
            note="both language levels (clean deletions = same-site negatives); abuse head only",
        ),
        SourceSpec(
            "fox_news", fox_news.load_fox_news, fox_news.FILES, "train", note="English; title + summary"
        ),
        # Abuse corpora with both classes from the same source, across dialects: they train the
        # abusive head only (experiments/public.toml, data.head_only_sources) and each is scored
        # left out.
        *(
            SourceSpec(module.SOURCE, loader, module.FILES, "train", note=note)
            for module, loader, note in (
                (osact2020, osact2020.load_osact2020, "tweets with a vocative; offensive or not"),
                (omcd, omcd.load_omcd, "Moroccan YouTube comments; offensive or not"),
                (alakrot_youtube, alakrot_youtube.load_alakrot_youtube, "YouTube comments, four dialects"),
                (
                    darija_offensive,
                    darija_offensive.load_darija_offensive,
                    "Moroccan Darija; offensive",
                ),
                (letmi, letmi.load_letmi, "Levantine tweets; misogyny annotation"),
                (egyptian_tweets, egyptian_tweets.load_egyptian_tweets, "Egyptian tweets; offensive or not"),
                (sectarian, sectarian.load_sectarian, "sectarian tweets; hateful or not"),
                (mlma, mlma.load_mlma, "multilingual hate tweets, Arabic part"),
                (saudi_hate, saudi_hate.load_saudi_hate, "Saudi hate tweets (cp1252→cp1256 repaired)"),
            )
        ),
        # Real published comments with no abuse label: the non-abusive side, and what "held with no
        # article" is measured on. Sentiment corpora keep their negative half: angry is not abusive.
        *(
            SourceSpec(module.SOURCE, loader, module.FILES, "train", note=note)
            for module, loader, note in (
                (aoc_sentences, aoc_sentences.load_aoc_sentences, "published news comments (3 sites)"),
                (myc, myc.load_myc, "Moroccan YouTube comments, sentiment"),
                (msac, msac.load_msac, "Moroccan comments, sentiment"),
                (mac, mac.load_mac, "Moroccan tweets, sentiment"),
            )
        ),
        SourceSpec(
            "omp",
            omp.load_omp,
            omp.FILES,
            "train",
            default=False,
            note="German, CC BY-NC-SA; only with --include omp",
        ),
    )
}
DEFAULT_SOURCES: tuple[str, ...] = tuple(n for n, s in SOURCES.items() if s.default)


class UnknownSource(ValueError):
    """A source name that is not in the registry."""


def select_sources(include: Iterable[str] = (), exclude: Iterable[str] = ()) -> list[SourceSpec]:
    """The default sources plus `include`, minus `exclude`, in registry order."""
    include, exclude = list(include), list(exclude)
    unknown = sorted({n for n in (*include, *exclude) if n not in SOURCES})
    if unknown:
        raise UnknownSource(f"unknown source(s): {', '.join(unknown)} (known: {', '.join(SOURCES)})")
    wanted = set(DEFAULT_SOURCES) | set(include)
    return [s for n, s in SOURCES.items() if n in wanted and n not in exclude]


def sort_key(record: LabeledRecord) -> tuple[str, str]:
    return (record.source or "", record.comment_id or "")


@dataclass(slots=True)
class BuildResult:
    """What a build produced: per-source records (sorted), skipped sources and the file hash."""

    records: list[LabeledRecord] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    sha256: str | None = None
    path: Path | None = None

    def counts(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for record in self.records:
            row = table.setdefault(record.source or "", {})
            row[record.label or ""] = row.get(record.label or "", 0) + 1
        return table


def collect(
    root: Path,
    sources: Sequence[SourceSpec],
    *,
    seed: int = aoc_repaired.DEFAULT_SEED,
    on_start: Callable[[str], None] | None = None,
    on_record: Callable[[str], None] | None = None,
    on_done: Callable[[str, int], None] | None = None,
) -> BuildResult:
    """Run the loaders, validate every record against the contract and sort the result.

    A source with missing files is recorded in `skipped` and the build goes on without it.
    """
    root = Path(root)
    result = BuildResult()
    for spec in sources:
        missing = spec.missing_files(root)
        if missing:
            result.skipped[spec.name] = missing
            continue
        if on_start:
            on_start(spec.name)
        n = 0
        try:
            for record in spec.load(root, seed):
                n += 1
                # Any loader bug that breaks the contract fails the build here, not in training.
                raw: dict[str, object] = dict(record.to_dict())
                validate_record(
                    raw,
                    path=f"<{spec.name}>",
                    line=n,
                    allowed_labels=DEFAULT_LABELS,
                )
                if record.source != spec.name or not record.comment_id or record.author:
                    raise ValueError(f"{spec.name}: record {n} breaks source/comment_id/author")
                result.records.append(record)
                if on_record:
                    on_record(spec.name)
        except CorpusFileMissing as exc:
            result.skipped[spec.name] = [str(exc)]
            result.records = [r for r in result.records if r.source != spec.name]
            continue
        if on_done:
            on_done(spec.name, n)
    ids = [sort_key(r) for r in result.records]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate (source, comment_id) in build")
    result.records.sort(key=sort_key)
    return result


def build(
    root: Path,
    out: Path,
    *,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    seed: int = aoc_repaired.DEFAULT_SEED,
    **callbacks: Callable,
) -> BuildResult:
    """Build every selected source into ONE canonical JSONL at `out` (sorted, deterministic)."""
    result = collect(root, select_sources(include, exclude), seed=seed, **callbacks)
    result.path = Path(out)
    result.sha256 = write_jsonl(result.records, out)
    return result
