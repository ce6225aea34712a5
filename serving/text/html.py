"""Comment bodies that arrive as HTML (Coral's HTML format, CMS exports) → the plain text a reader sees."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK_TAGS = frozenset(
    {"p", "div", "br", "li", "ul", "ol", "blockquote", "pre", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "hr"}
)
_SKIPPED_TAGS = frozenset({"script", "style", "template", "noscript", "head", "title", "iframe", "object"})
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")


class _TextExtractor(HTMLParser):
    """Collects the text of an HTML fragment: tags dropped, scripts and styles skipped, entities decoded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0
        self._links: list[tuple[str, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Open a skipped element, break a line for block elements, remember link targets."""
        if tag in _SKIPPED_TAGS:
            self._skipping += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")
        elif tag == "a":
            href = dict(attrs).get("href") or ""
            self._links.append((href.strip(), len(self.parts)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """`<br/>` and friends: a line break for block elements, nothing else."""
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        """Close a skipped element or a block; keep a link's target when its text does not show it."""
        if tag in _SKIPPED_TAGS:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            # A link is a spam signal; "<a href=spam.example>click</a>" must not lose it.
            if href.startswith(("http://", "https://", "www.")) and href not in "".join(self.parts[start:]):
                self.parts.append(f" {href}")

    def handle_data(self, data: str) -> None:
        """Text outside skipped elements."""
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Plain text of a comment's HTML: tags dropped, scripts/styles skipped, entities unescaped."""
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    lines = (_SPACES.sub(" ", line).strip() for line in "".join(extractor.parts).split("\n"))
    return "\n".join(line for line in lines if line)


# --- bodies --------------------------------------------------------------------------------------
