"""The queue in a real headless Chromium against a real server: log in, read, decide by keyboard, undo."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serving.store.queue import decisions_for
from serving.store.store import Store
from tests.conftest import ABUSIVE, POLITICS_BODY, POLITICS_TITLE, REPO
from tests.e2e.conftest import MODERATOR, MODERATOR_KEY, Server, browser_missing_reason, keep_screenshot

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(browser_missing_reason() is not None, reason=str(browser_missing_reason())),
]

SITE = "elaph"
SEED_ID = "seed-elaph-1"
SEED_TEXT = "Please send me all your news"
SPAM_ID = "spam-elaph-2"
# Arabic-Indic digits, and "VIP" in mathematical bold letters (as spammers write it): each of those
# is outside the BMP, two UTF-16 units in JavaScript, so a page that sliced the string by code units
# would highlight the wrong letters after it.
SPAM_TEXT = "للتواصل 𝗩𝗜𝗣 واتساب ٠٥٥١٢٣٤٥٦٧ ربح مضمون يوميا"
MIXED_ID = "mixed-elaph-3"
MIXED_TEXT = "الانسحاب من الأنبار مطلب قديم\nThe talks in Washington will not change that"
ABUSIVE_ID = "abusive-elaph-4"
SCREENSHOT = REPO / "serving" / "web" / "static" / "queue-screenshot.png"


@pytest.fixture(scope="module")
def seeded(server: Server) -> dict[str, dict[str, Any]]:
    """The article and four comments, scored through /v1/score like a CMS would."""
    server.call(
        "PUT",
        "/v1/articles/pol-1",
        {
            "title": POLITICS_TITLE,
            "text": POLITICS_BODY,
            "url": "https://elaph.example/politics/pol-1",
            "site": SITE,
        },
    )
    article = {"id": "pol-1", "title": POLITICS_TITLE, "text": POLITICS_BODY}
    scored = {}
    for comment_id, text in (
        (SEED_ID, SEED_TEXT),
        (SPAM_ID, SPAM_TEXT),
        (MIXED_ID, MIXED_TEXT),
        (ABUSIVE_ID, ABUSIVE[0]),
    ):
        body = {"comment": {"id": comment_id, "text": text}, "article": article, "site": SITE}
        scored[comment_id] = server.call("POST", "/v1/score", body)
    return scored


@pytest.fixture
def page(browser: Any, server: Server, seeded: dict[str, dict[str, Any]]) -> Iterator[Any]:
    """A fresh browser context (no cookies) logged in to the queue, failing on any console error."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 1000}, base_url=server.base_url, locale="ar"
    )
    tab = context.new_page()
    errors: list[str] = []
    tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto("/queue")
    assert tab.url.endswith("/queue/login")
    tab.fill("#login-name", MODERATOR)
    tab.fill("#login-key", MODERATOR_KEY)
    tab.click("button[type=submit]")
    tab.wait_for_url("**/queue")
    tab.wait_for_selector(f'li.item[data-comment-id="{SPAM_ID}"]')
    yield tab
    context.close()
    # CSP violations and script failures show up as console errors.
    assert errors == []


def item(page: Any, comment_id: str) -> Any:
    return page.locator(f'li.item[data-comment-id="{comment_id}"]')


def select(page: Any, comment_id: str) -> None:
    """Move the selection with j/k until `comment_id` is selected, as a moderator would."""
    ids = page.locator("li.item").evaluate_all("nodes => nodes.map(n => n.dataset.commentId)")
    target = ids.index(comment_id)
    current = page.locator("li.item").evaluate_all(
        "nodes => nodes.findIndex(n => n.classList.contains('selected'))"
    )
    key = "j" if target > current else "k"
    for _ in range(abs(target - current)):
        page.keyboard.press(key)
    assert page.locator("li.item.selected").get_attribute("data-comment-id") == comment_id


def expected_marks(text: str, spans: list[dict[str, Any]]) -> list[str]:
    """What each <mark> must hold: Python slices the text by code points, as the spans count."""
    return [text[span["begin"] : span["end"]] for span in sorted(spans, key=lambda span: span["begin"])]


def test_moderator_logs_in_reads_highlights_and_marks_spam_by_keyboard(
    page: Any, server: Server, seeded: dict[str, dict[str, Any]], artifacts: Path
) -> None:
    assert page.locator("html").get_attribute("dir") == "rtl"
    assert page.locator("html").get_attribute("lang") == "ar"
    seed = item(page, SEED_ID)
    spam = item(page, SPAM_ID)
    assert seed.locator(".comment-text").inner_text() == SEED_TEXT
    assert seed.locator(".article a").inner_text() == POLITICS_TITLE
    assert seed.locator(".article a").get_attribute("href") == "https://elaph.example/politics/pol-1"

    # The spam comment's highlight sits exactly on the spans' code points, emoji and all.
    assert spam.locator("mark").count() >= 1
    assert spam.locator("mark").all_inner_texts() == expected_marks(SPAM_TEXT, seeded[SPAM_ID]["spans"])
    assert any("٠٥٥١٢٣٤٥٦٧" in mark for mark in spam.locator("mark").all_inner_texts())
    if seeded[SEED_ID]["spans"]:
        assert seed.locator("mark").all_inner_texts() == expected_marks(SEED_TEXT, seeded[SEED_ID]["spans"])
    else:  # the tiny model flagged no words in the seed comment: it must still be held back
        assert seed.get_attribute("data-action") != "approve"
    assert seed.get_attribute("data-action") == seeded[SEED_ID]["decision"]["action"]

    # Every comment block takes its direction from its own text, line by line.
    block = item(page, MIXED_ID).locator("blockquote.comment")
    assert block.get_attribute("dir") == "auto"
    assert block.evaluate("node => getComputedStyle(node).unicodeBidi") == "plaintext"

    shot = artifacts / "queue.png"
    page.screenshot(path=str(shot), full_page=False)
    keep_screenshot(shot, SCREENSHOT)

    select(page, SEED_ID)
    page.keyboard.press("s")
    seed.wait_for(state="detached")
    assert "u" in page.locator("#status").inner_text()
    assert item(page, SPAM_ID).count() == 1

    store = Store.open(server.store_url)
    try:
        records = [record for record in store.feedback_since() if record.comment_id == SEED_ID]
        assert len(records) == 1
        (record,) = records
        assert (record.label, record.moderator, record.site, record.source) == (
            "spam",
            MODERATOR,
            SITE,
            "queue",
        )
        assert record.text == SEED_TEXT and record.article_title == POLITICS_TITLE
        (decision,) = decisions_for(store, SEED_ID, SITE)
        assert decision.model_version == seeded[SEED_ID]["model"]["version"] == "0-test"
        assert decision.feedback_id == record.id
    finally:
        store.close()


def test_buttons_undo_and_the_english_interface(page: Any, server: Server, artifacts: Path) -> None:
    page.keyboard.press("u")
    assert page.locator("#status").inner_text() == "لا يوجد قرار للتراجع عنه."
    abusive = item(page, ABUSIVE_ID)
    abusive.locator("button.decide-abusive").click()
    abusive.wait_for(state="detached")
    store = Store.open(server.store_url)
    try:
        assert [r.label for r in store.feedback_since() if r.comment_id == ABUSIVE_ID] == ["abusive"]
        assert page.locator("#undo").is_visible()
        page.keyboard.press("u")
        abusive.wait_for(state="attached")
        assert page.locator("#undo").is_hidden()
        assert page.locator("li.item.selected").get_attribute("data-comment-id") == ABUSIVE_ID
        assert [r for r in store.feedback_since() if r.comment_id == ABUSIVE_ID] == []
    finally:
        store.close()

    page.click("#lang-switch")
    assert page.locator("html").get_attribute("dir") == "ltr"
    assert page.locator("html").get_attribute("lang") == "en"
    assert item(page, SPAM_ID).locator("button.decide-spam span").inner_text() == "Spam"
    page.reload()
    page.wait_for_selector(f'li.item[data-comment-id="{SPAM_ID}"]')
    assert page.locator("html").get_attribute("dir") == "ltr"
    assert page.locator(".shortcuts").inner_text().startswith("Keys:")
    page.screenshot(path=str(artifacts / "queue-en.png"))

    # A filter narrows the list without a reload, and the URL keeps it.
    action = item(page, SPAM_ID).get_attribute("data-action")
    page.select_option("select[name=action]", action)
    with page.expect_response(lambda response: "/v1/queue/items" in response.url):
        page.click("#filters button[type=submit]")
    page.wait_for_function(
        "action => [...document.querySelectorAll('li.item')].every(n => n.dataset.action === action)",
        arg=action,
    )
    assert item(page, SPAM_ID).count() == 1
    assert f"action={action}" in page.url


# What the status line says after importing that many comments: each count falls in a different
# CLDR plural category (Arabic: one, two, few, many, other; English: one, other).
IMPORTED_ARABIC = {
    1: "تم استيراد تعليق واحد وتقييمه.",
    2: "تم استيراد تعليقين وتقييمهما.",
    3: "تم استيراد 3 تعليقات وتقييمها.",
    11: "تم استيراد 11 تعليقًا وتقييمها.",
    100: "تم استيراد 100 تعليق وتقييمها.",
}
IMPORTED_ENGLISH = {1: "Imported and scored 1 comment.", 2: "Imported and scored 2 comments."}


def import_through_the_page(page: Any, count: int) -> None:
    """Upload a CSV of `count` new comments with the page's import form (on a site of their own)."""
    rows = "".join(f"plural-{count}-{index},plurals,تعليق رقم {index}\n" for index in range(count))
    csv = ("comment_id,site,text\n" + rows).encode("utf-8")
    page.set_input_files(
        "#import-form input[type=file]",
        files=[{"name": f"plural-{count}.csv", "mimeType": "text/csv", "buffer": csv}],
    )
    if not page.locator("details.import").evaluate("node => node.open"):
        page.click("details.import summary")
    with page.expect_response(lambda response: "/v1/queue/import" in response.url):
        page.click("#import-form button[type=submit]")


def expect_status(page: Any, text: str) -> None:
    page.wait_for_function("text => document.getElementById('status').textContent === text", arg=text)


def test_counts_take_the_plural_form_of_their_language(page: Any) -> None:
    for count, sentence in IMPORTED_ARABIC.items():
        import_through_the_page(page, count)
        expect_status(page, sentence)
    page.click("#lang-switch")
    for count, sentence in IMPORTED_ENGLISH.items():
        import_through_the_page(page, count)
        expect_status(page, sentence)
    # The sentence on screen follows a language switch, plural form included.
    page.click("#lang-switch")
    expect_status(page, IMPORTED_ARABIC[2])
