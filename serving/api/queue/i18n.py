"""The queue's two interface languages: its strings, which language a request gets, page rendering.

The strings live in one file (`queue-strings.json`) that the server renders into the pages and
`queue.js` reads from them. A value is either a string or, for a sentence that counts something,
an object of CLDR plural forms (`zero`…`other` in Arabic, `one`/`other` in English) that the
script chooses between with `Intl.PluralRules`; the server itself never renders plural forms.
"""

from __future__ import annotations

import hashlib
import html
import json
from functools import lru_cache
from string import Template

from fastapi import Request
from fastapi.responses import Response

from serving.api.queue.paths import STATIC_DIR, STRINGS_FILE, TEMPLATES_DIR, is_https, root_path

LANG_COOKIE = "raqib_lang"
LANGUAGES = ("ar", "en")
DEFAULT_LANGUAGE = "ar"
LANG_COOKIE_SECONDS = 365 * 24 * 3600

UiString = str | dict[str, str]
"""A sentence, or its plural forms by CLDR category."""


@lru_cache(maxsize=1)
def ui_strings() -> dict[str, dict[str, UiString]]:
    """The interface strings per language (one file, shared by the server and queue.js)."""
    strings: dict[str, dict[str, UiString]] = json.loads(STRINGS_FILE.read_text(encoding="utf-8"))
    return strings


@lru_cache(maxsize=1)
def _strings_json() -> str:
    # Inside a <script type="application/json"> block: no "<", ">" or "&" may end it early.
    text = json.dumps(ui_strings(), ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@lru_cache(maxsize=1)
def asset_version() -> str:
    """A hash of the page's assets, appended to their URLs so a new release is never served stale."""
    digest = hashlib.sha256()
    for name in ("queue.js", "queue.css", "queue-strings.json"):
        digest.update((STATIC_DIR / name).read_bytes())
    return digest.hexdigest()[:12]


@lru_cache(maxsize=4)
def _template(name: str) -> Template:
    return Template((TEMPLATES_DIR / name).read_text(encoding="utf-8"))


def ui_text(lang: str, key: str) -> str:
    """The plain string `key` in `lang`, or "" when there is none (plural forms are the script's)."""
    text = ui_strings()[lang].get(key, "")
    return text if isinstance(text, str) else ""


def choose_language(request: Request, asked: str | None = None) -> str:
    """`?lang=`, else the language cookie, else the browser's first ar/en preference, else Arabic."""
    if asked in LANGUAGES:
        return asked
    cookie = request.cookies.get(LANG_COOKIE)
    if cookie in LANGUAGES:
        return cookie
    for part in request.headers.get("accept-language", "").split(","):
        primary = part.split(";")[0].strip().lower()[:2]
        if primary in LANGUAGES:
            return primary
    return DEFAULT_LANGUAGE


def remember_language(response: Response, request: Request, asked: str | None) -> None:
    """Keep a language chosen with `?lang=` in a cookie, for the next visit."""
    if asked in LANGUAGES:
        response.set_cookie(
            LANG_COOKIE,
            asked,
            max_age=LANG_COOKIE_SECONDS,
            path="/",
            samesite="strict",
            secure=is_https(request),
        )


def render_page(request: Request, template: str, lang: str, **values: str) -> str:
    """Fill a page template: every value HTML-escaped, strings in `lang` as $t_<key>."""
    strings = ui_strings()[lang]
    fields = {f"t_{key}": html.escape(text) for key, text in strings.items() if isinstance(text, str)}
    fields.update({key: html.escape(value) for key, value in values.items()})
    fields.update(
        lang=lang,
        dir="rtl" if lang == "ar" else "ltr",
        other_lang="en" if lang == "ar" else "ar",
        root=html.escape(root_path(request)),
        asset_version=asset_version(),
        strings_json=_strings_json(),
    )
    return _template(template).substitute(fields)
