"""AOC (Arabic Online Commentary sample): real reader comments paired with their own article.

Label: every comment → `on_topic` (a comment under its own article). The corpus has no
moderation labels; see `aoc_repaired` for the constructed off-topic pairs built from it.
Commenter names, e-mails and locations in the XML are never read.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from serving.schema import ON_TOPIC
from training.data.contract import LabeledRecord
from training.data.datasets.common import finalize, iso_datetime, require

SOURCE = "aoc"
FOLDER = "aoc_arabic_online_commentary"
COMMENTS_FILE = f"{FOLDER}/AOC_sample_comments.xml"
ARTICLES_FILE = f"{FOLDER}/AOC_sample_articles.xml"
FILES = (COMMENTS_FILE, ARTICLES_FILE)

# The newspaper name the site puts in front of every <title>.
_TITLE_PREFIX = re.compile(r"^\s*(?:جريدة الغد|جريدة الرياض|اليوم السابع)\s*[-:|]\s*")
# A <doc> start tag ends at the first quote-then-'>' (no attribute value contains `">`).
_DOC = re.compile(r'<doc\s(.*?")\s*>(.*?)</doc>', re.DOTALL)
# Attribute values may hold raw double quotes (titles quote names), so a value ends only at a
# quote followed by the next attribute or the end of the tag.
_ATTR = re.compile(r'([A-Za-z_][\w\-]*)="(.*?)"(?=\s+[A-Za-z_][\w\-]*="|\s*/?$)', re.DOTALL)
_SEG = re.compile(r"<seg\b[^>]*>(.*?)</seg>", re.DOTALL)
_TAG = re.compile(r"</?[A-Za-z][\w\-]*(?:\s[^<>]*)?/?>")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class AocDoc:
    """One <doc>: its attributes and its <seg> sentences (tags removed, entities decoded)."""

    attrs: dict[str, str]
    segs: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(s for s in self.segs if s)


@dataclass(frozen=True, slots=True)
class AocArticle:
    article_id: str
    site: str
    url: str
    title: str | None
    text: str


def _clean_seg(raw: str) -> str:
    return _SPACES.sub(" ", html.unescape(_TAG.sub(" ", raw))).strip()


def _parse_wellformed(data: bytes) -> list[AocDoc] | None:
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return None
    docs = []
    for doc in root.iter("doc"):
        segs = tuple(_SPACES.sub(" ", "".join(seg.itertext())).strip() for seg in doc.iter("seg"))
        docs.append(AocDoc(attrs=dict(doc.attrib), segs=segs))
    return docs


def _parse_regex(text: str) -> list[AocDoc]:
    docs = []
    for match in _DOC.finditer(text):
        attrs = {k: html.unescape(v) for k, v in _ATTR.findall(match.group(1).strip())}
        segs = tuple(_clean_seg(s) for s in _SEG.findall(match.group(2)))
        docs.append(AocDoc(attrs=attrs, segs=segs))
    return docs


def parse_docs(path: Path) -> list[AocDoc]:
    """All <doc>s of an AOC XML file; XML parser when well-formed, else a line-anchored regex.

    The released files are not well-formed (raw '<' in comments, raw quotes in titles).
    """
    data = Path(path).read_bytes()
    docs = _parse_wellformed(data)
    if docs is None:
        docs = _parse_regex(data.decode("utf-8"))
    return docs


def _site_and_id(docid: str) -> tuple[str, str]:
    """`alghad_500015_comment001` / `alghad_500015_article` → ('alghad', '500015')."""
    parts = docid.split("_")
    if len(parts) < 3 or not parts[1].isdigit():
        raise ValueError(f"unexpected AOC docid {docid!r}")
    return parts[0], parts[1]


def strip_site_prefix(title: str | None) -> str | None:
    if title is None:
        return None
    return _TITLE_PREFIX.sub("", title).strip() or None


def _created_at(attrs: dict[str, str]) -> str | None:
    date, time = attrs.get("date", "").strip(), attrs.get("time", "").strip()
    if not date:
        return None
    if not time:
        return iso_datetime(date, ("%d/%m/%Y",))
    return iso_datetime(f"{date} {time}", ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M"))


def load_articles(root: Path) -> dict[str, AocArticle]:
    """Articles keyed by their URL (the join key comments carry)."""
    (path,) = require(root, ARTICLES_FILE)
    articles: dict[str, AocArticle] = {}
    for doc in parse_docs(path):
        site, news_id = _site_and_id(doc.attrs["docid"])
        url = doc.attrs["articleURL"].strip()
        articles[url] = AocArticle(
            article_id=f"aoc:{site}_{news_id}",
            site=site,
            url=url,
            title=strip_site_prefix(doc.attrs.get("htmlTitle")),
            text=doc.text,
        )
    return articles


class UnjoinedComment(ValueError):
    """An AOC comment whose articleURL is not in the articles file."""


def load_aoc(root: Path) -> Iterator[LabeledRecord]:
    """Each AOC comment with its own article, labelled on_topic."""
    comments_path, _ = require(root, *FILES)
    articles = load_articles(root)

    def raw() -> Iterator[LabeledRecord]:
        for doc in parse_docs(comments_path):
            docid = doc.attrs["docid"]
            site, _ = _site_and_id(docid)
            url = doc.attrs.get("articleURL", "").strip()
            article = articles.get(url)
            if article is None:
                raise UnjoinedComment(f"{comments_path}: comment {docid} has no article {url!r}")
            yield LabeledRecord(
                text=doc.text,
                label=ON_TOPIC,
                comment_id=f"{SOURCE}:{docid}",
                article_id=article.article_id,
                article_title=article.title,
                article_text=article.text,
                site=site,
                source=SOURCE,
                created_at=_created_at(doc.attrs),
            )

    yield from finalize(raw())
