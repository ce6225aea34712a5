"""The moderators' queue: login and sessions, pending items, decisions and undo, filters, import, headers."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.api.queue.auth import SESSION_COOKIE, QueueAuth
from serving.api.queue.routes import CONTENT_SECURITY_POLICY, ui_strings
from serving.settings import Settings, SettingsError
from serving.store.queue import decisions_for
from serving.store.store import Store
from tests.api.conftest import AUTH, MakeClient
from tests.conftest import ABUSIVE, ON_POLITICS, POLITICS_BODY, POLITICS_TITLE, SPAM

pytestmark = pytest.mark.api

MODERATORS = ["Amira:amira-key-123", "Omar:omar-key-456"]
SECRET = "queue-test-session-secret"
ARABIC_SPAM = "للتواصل واتساب ٠٥٥١٢٣٤٥٦٧ ربح مضمون يوميا"


@pytest.fixture
def queue(make_client: MakeClient) -> TestClient:
    """A client with two moderators and a fixed session secret."""
    return make_client(moderator_keys=MODERATORS, session_secret=SECRET)


def store_of(client: TestClient) -> Store:
    store = client.app.state.service.stores.current
    assert store is not None
    return store


def login(client: TestClient, name: str = "Amira", key: str = "amira-key-123") -> str:
    """Log in through the form; returns the CSRF token embedded in the queue page."""
    client.cookies.delete(SESSION_COOKIE)
    form = client.get("/queue/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    response = client.post(
        "/queue/login", data={"name": name, "key": key, "csrf": token.group(1)}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    page = client.get("/queue")
    assert page.status_code == 200
    csrf = re.search(r'<meta name="raqib-csrf" content="([0-9a-f]+)">', page.text)
    assert csrf is not None
    return csrf.group(1)


def csrf_header(token: str) -> dict[str, str]:
    return {"X-Raqib-CSRF": token}


def put_politics_article(client: TestClient, site: str = "elaph") -> None:
    body = {
        "title": POLITICS_TITLE,
        "text": POLITICS_BODY,
        "url": "https://elaph.example/pol-1",
        "site": site,
    }
    assert client.put("/v1/articles/pol-1", json=body, headers=AUTH).status_code == 200


def score(
    client: TestClient, comment_id: str | None, comment: str, /, site: str | None = "elaph", **article: Any
) -> dict:
    """Score a comment through /v1/score (keyword arguments other than `site` describe the article)."""
    body: dict[str, Any] = {"comment": {"text": comment}, "site": site}
    if comment_id is not None:
        body["comment"]["id"] = comment_id
    if article:
        body["article"] = article
    response = client.post("/v1/score", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def items(client: TestClient, **params: Any) -> list[dict]:
    response = client.get("/v1/queue/items", params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def ids(found: list[dict]) -> list[str]:
    return [item["comment_id"] for item in found]


# --- login and sessions --------------------------------------------------------------------------


def test_no_page_and_no_json_without_login(queue: TestClient) -> None:
    page = queue.get("/queue", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/queue/login"
    listing = queue.get("/v1/queue/items")
    assert listing.status_code == 401 and listing.headers["www-authenticate"] == "Bearer"
    assert listing.json()["error"]["code"] == "unauthorized"
    decision = queue.post("/v1/queue/decisions", json={"audit_id": 1, "decision": "spam"})
    assert decision.status_code == 401
    imported = queue.post("/v1/queue/import", json=[{"text": "x"}])
    assert imported.status_code == 401
    wrong_key = queue.get("/v1/queue/items", headers={"Authorization": "Bearer not-a-moderator"})
    assert wrong_key.status_code == 401
    # An API key is not a moderator key.
    assert queue.get("/v1/queue/items", headers=AUTH).status_code == 401


def test_forged_expired_and_revoked_cookies_are_refused(queue: TestClient) -> None:
    auth = QueueAuth({"Amira": "amira-key-123"}, SECRET.encode(), 3600)
    good = auth.issue("Amira")
    assert auth.verify(good) == "Amira"
    name, expiry, signature = good.split(".")
    forged_name = auth.issue("Omar").split(".")[0]
    bad_values = [
        f"{forged_name}.{expiry}.{signature}",  # someone else's name under Amira's signature
        f"{name}.{int(expiry) + 3600}.{signature}",  # a later expiry
        f"{name}.{expiry}.{'0' * 64}",
        auth.issue("Amira", now=time.time() - 7200),  # expired an hour ago
        QueueAuth({"Amira": "k"}, b"another-secret", 3600).issue("Amira"),
        "garbage",
        "a.b.c",
    ]
    for value in bad_values:
        queue.cookies.set(SESSION_COOKIE, value)
        assert queue.get("/queue", follow_redirects=False).status_code == 303, value
        assert queue.get("/v1/queue/items").status_code == 401, value
    queue.cookies.set(SESSION_COOKIE, good)
    assert queue.get("/queue").status_code == 200
    # A moderator no longer configured loses their session even with a valid signature.
    queue.cookies.set(SESSION_COOKIE, QueueAuth({"Gone": "k"}, SECRET.encode(), 3600).issue("Gone"))
    assert queue.get("/v1/queue/items").status_code == 401


def test_login_sets_a_signed_httponly_strict_cookie(queue: TestClient) -> None:
    form = queue.get("/queue/login")
    assert form.status_code == 200
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    response = queue.post(
        "/queue/login",
        data={"name": "Amira", "key": "amira-key-123", "csrf": token.group(1)},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/queue"
    cookies = response.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith(f"{SESSION_COOKIE}="))
    flags = [part.strip().lower() for part in session.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert "secure" not in flags  # plain http here
    assert "max-age=43200" in flags
    value = session.split(";")[0].split("=", 1)[1]
    assert QueueAuth({"Amira": "amira-key-123"}, SECRET.encode(), 60).verify(value) == "Amira"
    page = queue.get("/queue")
    assert page.status_code == 200 and "Amira" in page.text
    # Logged in: the login page sends you on to the queue.
    assert queue.get("/queue/login", follow_redirects=False).headers["location"] == "/queue"


def test_session_cookie_is_secure_over_https(make_client: MakeClient) -> None:
    client = make_client(moderator_keys=MODERATORS, session_secret=SECRET)
    client.base_url = client.base_url.copy_with(scheme="https")
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/queue/login").text)
    assert token is not None
    response = client.post(
        "/queue/login",
        data={"name": "Omar", "key": "omar-key-456", "csrf": token.group(1)},
        follow_redirects=False,
    )
    session = next(c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
    assert "secure" in [part.strip().lower() for part in session.split(";")]


def test_wrong_key_wrong_name_and_missing_form_token_are_refused(queue: TestClient) -> None:
    page = queue.get("/queue/login")
    for name, key in [("Amira", "omar-key-456"), ("Nobody", "amira-key-123"), ("Amira", "")]:
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        response = queue.post("/queue/login", data={"name": name, "key": key, "csrf": token.group(1)})
        assert response.status_code == 401
        page = response  # each form rendered carries a fresh token
        assert not any(c.startswith(SESSION_COOKIE) for c in response.headers.get_list("set-cookie"))
        assert ui_strings()["ar"]["login_failed"] in response.text
    queue.cookies.clear()
    forged = queue.post("/queue/login", data={"name": "Amira", "key": "amira-key-123", "csrf": "made-up"})
    assert forged.status_code == 403
    assert not any(c.startswith(SESSION_COOKIE) for c in forged.headers.get_list("set-cookie"))


def test_typed_name_is_escaped_when_the_form_comes_back(queue: TestClient) -> None:
    token = re.search(r'name="csrf" value="([^"]+)"', queue.get("/queue/login").text)
    assert token is not None
    evil = '"><script>alert(1)</script>'
    response = queue.post("/queue/login", data={"name": evil, "key": "x", "csrf": token.group(1)})
    assert response.status_code == 401
    assert "<script>alert(1)" not in response.text and "&lt;script&gt;alert(1)" in response.text


def test_an_arabic_moderator_name_logs_in_and_is_recorded(make_client: MakeClient) -> None:
    client = make_client(moderator_keys=["ليلى:layla-key-789"], session_secret=SECRET)
    score(client, "c-1", SPAM[0])
    csrf = login(client, "ليلى", "layla-key-789")
    assert "ليلى" in client.get("/queue").text
    decided = client.post(
        "/v1/queue/decisions",
        json={"comment_id": "c-1", "site": "elaph", "decision": "spam"},
        headers=csrf_header(csrf),
    )
    assert decided.status_code == 201 and decided.json()["moderator"] == "ليلى"
    assert [f.moderator for f in store_of(client).feedback_since()] == ["ليلى"]


def test_logout_ends_the_session_in_this_browser(queue: TestClient) -> None:
    csrf = login(queue)
    assert queue.post("/queue/logout", data={"csrf": "wrong"}, follow_redirects=False).status_code == 403
    response = queue.post("/queue/logout", data={"csrf": csrf}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/queue/login"
    assert queue.get("/queue", follow_redirects=False).status_code == 303


def test_queue_is_disabled_without_moderator_keys(client: TestClient) -> None:
    page = client.get("/queue/login")
    assert page.status_code == 403 and ui_strings()["ar"]["queue_disabled"] in page.text
    assert client.get("/queue", follow_redirects=False).status_code == 303
    listing = client.get("/v1/queue/items", headers={"Authorization": "Bearer anything"})
    assert listing.status_code == 403 and listing.json()["error"]["code"] == "queue_disabled"


def test_moderator_key_settings_are_checked(tmp_path: Any) -> None:
    keys_file = tmp_path / "moderators"
    keys_file.write_text("# name:key\nليلى:layla-key-789\n\n", encoding="utf-8")
    settings = Settings(moderator_keys="Amira:a-key,Omar:o:key", moderator_keys_file=keys_file)
    assert settings.resolved_moderator_keys() == {"Amira": "a-key", "Omar": "o:key", "ليلى": "layla-key-789"}
    for bad in (["no-colon"], [":key"], ["name:"], ["A:k1", "A:k2"], ["A:k", "B:k"]):
        with pytest.raises(SettingsError) as info:
            Settings(moderator_keys=bad).resolved_moderator_keys()
        assert "k1" not in str(info.value) and "k2" not in str(info.value)


# --- pending items ------------------------------------------------------------------------------


def test_scored_comments_are_pending_with_spans_and_article(queue: TestClient) -> None:
    put_politics_article(queue)
    seed = score(queue, "seed-elaph-1", "Please send me all your news", id="pol-1")
    spam = score(queue, "spam-1", ARABIC_SPAM, id="pol-1")
    score(queue, None, ON_POLITICS[0])  # no comment id: nothing a moderator could answer
    login(queue)
    response = queue.get("/v1/queue/items")
    body = response.json()
    assert body["moderator"] == "Amira" and body["has_more"] is False
    assert set(body["labels"]) == {"on_topic", "off_topic", "spam", "abusive"}
    assert body["sites"] == ["elaph"]
    assert body["decisions"] == {
        "approve": "on_topic",
        "spam": "spam",
        "off_topic": "off_topic",
        "abusive": "abusive",
    }
    by_id = {item["comment_id"]: item for item in body["items"]}
    assert set(by_id) == {"seed-elaph-1", "spam-1"}
    item = by_id["spam-1"]
    assert item["text"] == ARABIC_SPAM and item["site"] == "elaph" and item["source"] == "score"
    assert item["article"] == {"id": "pol-1", "title": POLITICS_TITLE, "url": "https://elaph.example/pol-1"}
    assert (item["label"], item["scores"], item["action"]) == (spam["label"], spam["scores"], spam["action"])
    assert item["model"] == {"name": "raqib-moderator", "version": "0-test"} == item["explained_by"]
    # The spans are the ones /v1/score gave, and index the original text (Arabic-Indic digits and all).
    assert item["spans"] == spam["spans"] and item["spans"]
    assert any("٠٥٥١٢٣٤٥٦٧" in ARABIC_SPAM[s["begin"] : s["end"]] for s in item["spans"])
    # The model's reasons; which stored article was used, /v1/score's extra reason, the queue shows as
    # the item's article.
    assert item["reasons"] == [r for r in spam["reasons"] if r["kind"] != "article"]
    assert by_id["seed-elaph-1"]["scores"] == seed["scores"]


# --- decisions and undo -------------------------------------------------------------------------


def test_a_decision_is_one_feedback_record_and_leaves_the_queue(queue: TestClient) -> None:
    put_politics_article(queue)
    score(queue, "seed-elaph-1", "Please send me all your news", id="pol-1")
    score(queue, "spam-1", ARABIC_SPAM, id="pol-1")
    csrf = login(queue)
    seed = next(item for item in items(queue) if item["comment_id"] == "seed-elaph-1")
    response = queue.post(
        "/v1/queue/decisions",
        json={"audit_id": seed["audit_id"], "decision": "spam"},
        headers=csrf_header(csrf),
    )
    assert response.status_code == 201, response.text
    result = response.json()
    assert (result["comment_id"], result["site"], result["label"], result["moderator"]) == (
        "seed-elaph-1",
        "elaph",
        "spam",
        "Amira",
    )
    assert result["model"] == {"name": "raqib-moderator", "version": "0-test"}
    store = store_of(queue)
    (feedback,) = store.feedback_since()
    assert (feedback.comment_id, feedback.site, feedback.label, feedback.moderator, feedback.source) == (
        "seed-elaph-1",
        "elaph",
        "spam",
        "Amira",
        "queue",
    )
    assert feedback.text == "Please send me all your news"
    assert (feedback.article_id, feedback.article_title, feedback.article_text) == (
        "pol-1",
        POLITICS_TITLE,
        POLITICS_BODY,
    )
    (logged,) = decisions_for(store, "seed-elaph-1", "elaph")
    assert (logged.feedback_id, logged.audit_id, logged.model_version, logged.moderator) == (
        feedback.id,
        seed["audit_id"],
        "0-test",
        "Amira",
    )
    assert ids(items(queue)) == ["spam-1"]
    # The export for the next training run has it.
    (exported,) = list(store.export_labels())
    assert (exported["comment_id"], exported["label"], exported["article_title"]) == (
        "seed-elaph-1",
        "spam",
        POLITICS_TITLE,
    )
    again = queue.post(
        "/v1/queue/decisions",
        json={"audit_id": seed["audit_id"], "decision": "approve"},
        headers=csrf_header(csrf),
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_decided"
    assert "Amira" in again.json()["error"]["message"]
    assert len(store.feedback_since()) == 1


def test_approve_records_on_topic_and_comment_id_works_too(queue: TestClient) -> None:
    score(queue, "c-1", ON_POLITICS[1], site=None, title=POLITICS_TITLE)
    csrf = login(queue)
    response = queue.post(
        "/v1/queue/decisions", json={"comment_id": "c-1", "decision": "approve"}, headers=csrf_header(csrf)
    )
    assert response.status_code == 201 and response.json()["label"] == "on_topic"
    assert response.json()["site"] is None
    assert items(queue) == []
    missing = queue.post(
        "/v1/queue/decisions", json={"comment_id": "nope", "decision": "spam"}, headers=csrf_header(csrf)
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "comment_not_found"
    for bad in ({"audit_id": 1, "decision": "ignore"}, {"decision": "spam"}, {"audit_id": 1}):
        invalid = queue.post("/v1/queue/decisions", json=bad, headers=csrf_header(csrf))
        assert invalid.status_code == 422, bad


def test_undo_puts_the_comment_back_and_keeps_the_log(queue: TestClient) -> None:
    score(queue, "c-1", SPAM[0])
    score(queue, "c-2", ABUSIVE[0])
    csrf = login(queue)
    first = items(queue)[0]
    decided = queue.post(
        "/v1/queue/decisions",
        json={"audit_id": first["audit_id"], "decision": "spam"},
        headers=csrf_header(csrf),
    ).json()
    assert first["comment_id"] not in ids(items(queue))
    # Only the moderator who decided can take it back.
    omar = queue.post(
        "/v1/queue/undo",
        json={"decision_id": decided["decision_id"]},
        headers={"Authorization": "Bearer omar-key-456"},
    )
    assert omar.status_code == 404
    undone = queue.post(
        "/v1/queue/undo", json={"decision_id": decided["decision_id"]}, headers=csrf_header(csrf)
    )
    assert undone.status_code == 200, undone.text
    assert undone.json() == {
        "decision_id": decided["decision_id"],
        "comment_id": first["comment_id"],
        "site": "elaph",
        "pending": True,
    }
    assert first["comment_id"] in ids(items(queue))
    store = store_of(queue)
    assert store.feedback_since() == []
    (logged,) = decisions_for(store, first["comment_id"], "elaph")
    assert logged.undone_at is not None and logged.label == "spam"
    twice = queue.post(
        "/v1/queue/undo", json={"decision_id": decided["decision_id"]}, headers=csrf_header(csrf)
    )
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "already_undone"
    # Decided again after the undo: a new record, and the queue moves on.
    again = queue.post(
        "/v1/queue/decisions",
        json={"audit_id": first["audit_id"], "decision": "abusive"},
        headers=csrf_header(csrf),
    )
    assert again.status_code == 201
    assert [f.label for f in store.feedback_since()] == ["abusive"]


def test_a_moderator_key_works_without_a_session_or_csrf(queue: TestClient) -> None:
    score(queue, "c-1", SPAM[1])
    omar = {"Authorization": "Bearer omar-key-456"}
    listing = queue.get("/v1/queue/items", headers=omar)
    assert listing.status_code == 200 and listing.json()["moderator"] == "Omar"
    response = queue.post(
        "/v1/queue/decisions", json={"comment_id": "c-1", "site": "elaph", "decision": "spam"}, headers=omar
    )
    assert response.status_code == 201 and response.json()["moderator"] == "Omar"


def test_csrf_header_is_required_with_a_session(queue: TestClient) -> None:
    score(queue, "c-1", SPAM[1])
    csrf = login(queue)
    audit_id = items(queue)[0]["audit_id"]
    payload = {"audit_id": audit_id, "decision": "spam"}
    for headers in ({}, {"X-Raqib-CSRF": "0" * 64}, {"X-Raqib-CSRF": csrf[:-1]}):
        refused = queue.post("/v1/queue/decisions", json=payload, headers=headers)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
        assert queue.post("/v1/queue/undo", json={"decision_id": 1}, headers=headers).status_code == 403
        imported = queue.post(
            "/v1/queue/import", json=[{"comment_id": "x", "text": "hello"}], headers=headers
        )
        assert imported.status_code == 403
    assert store_of(queue).feedback_since() == []
    # The token belongs to one session: Omar's token does not work with Amira's cookie.
    other = login(queue, "Omar", "omar-key-456")
    assert other != csrf
    mine = login(queue)
    assert queue.post("/v1/queue/decisions", json=payload, headers=csrf_header(other)).status_code == 403
    assert queue.post("/v1/queue/decisions", json=payload, headers=csrf_header(mine)).status_code == 201


# --- filters and ordering -----------------------------------------------------------------------


def test_filters_and_ordering(queue: TestClient) -> None:
    results = {
        "s-1": score(queue, "s-1", SPAM[0], site="elaph"),
        "s-2": score(queue, "s-2", SPAM[3], site="hespress"),
        "a-1": score(queue, "a-1", ABUSIVE[0], site="elaph"),
        "o-1": score(queue, "o-1", ON_POLITICS[0], site="elaph", title=POLITICS_TITLE, text=POLITICS_BODY),
        "n-1": score(queue, "n-1", ON_POLITICS[2], site=None),
    }
    login(queue)

    def risk(comment_id: str) -> float:
        scores = results[comment_id]["scores"]
        return max(p for label, p in scores.items() if label != "on_topic")

    everything = items(queue)
    assert ids(everything) == sorted(results, key=lambda c: -risk(c))
    assert [item["risk"] for item in everything] == sorted(
        (item["risk"] for item in everything), reverse=True
    )
    assert ids(items(queue, order="time")) == ["n-1", "o-1", "a-1", "s-2", "s-1"]
    assert set(ids(items(queue, site="elaph"))) == {"s-1", "a-1", "o-1"}
    assert ids(items(queue, site="")) == ["n-1"]
    for action in ("approve", "review", "reject"):
        expected = {c for c, r in results.items() if r["decision"]["action"] == action}
        assert set(ids(items(queue, action=action))) == expected, action
    spam_like = {c for c, r in results.items() if (r["decision"]["label"] or r["label"]) == "spam"}
    assert spam_like and set(ids(items(queue, label="spam"))) == spam_like
    threshold = 0.5
    high = set(ids(items(queue, min_score=threshold)))
    low = set(ids(items(queue, max_score=threshold)))
    assert high == {c for c in results if risk(c) >= threshold}
    assert low == {c for c in results if risk(c) <= threshold}
    page_one = queue.get("/v1/queue/items", params={"limit": 2}).json()
    page_two = queue.get("/v1/queue/items", params={"limit": 2, "offset": 2}).json()
    last = queue.get("/v1/queue/items", params={"limit": 2, "offset": 4}).json()
    assert page_one["has_more"] and page_two["has_more"] and not last["has_more"]
    assert ids(page_one["items"]) + ids(page_two["items"]) + ids(last["items"]) == ids(everything)
    assert set(queue.get("/v1/queue/items").json()["sites"]) == {None, "elaph", "hespress"}
    for bad in ({"order": "random"}, {"min_score": 2}, {"limit": 0}, {"action": "delete"}):
        assert queue.get("/v1/queue/items", params=bad).status_code == 422, bad


def test_a_rescored_comment_shows_once_with_its_latest_scores(queue: TestClient) -> None:
    score(queue, "c-1", ON_POLITICS[0], title=POLITICS_TITLE)
    latest = score(queue, "c-1", SPAM[0])
    login(queue)
    (item,) = items(queue)
    assert item["scores"] == latest["scores"] and item["text"] == SPAM[0]


# --- import -------------------------------------------------------------------------------------

CSV_EXPORT = (
    "comment_id,text,label,article_id,article_title,article_text,author,site,source,created_at\n"
    'imp-1,"للتواصل واتساب ٠٥٥١٢٣٤٥٦٧\nربح مضمون",spam,,'
    + POLITICS_TITLE
    + ",,u-1,elaph,cms,2024-01-01T00:00:00\n"
    f"imp-2,{ON_POLITICS[0]},,pol-9,{POLITICS_TITLE},{POLITICS_BODY.replace(',', '،')},,elaph,,\n"
    f",{ABUSIVE[3]},,,,,,,,\n"
)


def test_import_csv_scores_every_row_and_queues_it(queue: TestClient) -> None:
    csrf = login(queue)
    response = queue.post(
        "/v1/queue/import",
        files={"file": ("export.csv", CSV_EXPORT.encode("utf-8-sig"), "text/csv")},
        headers=csrf_header(csrf),
    )
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["imported"] == 3 and result["model"]["version"] == "0-test"
    derived = result["comment_ids"][2]
    assert result["comment_ids"][:2] == ["imp-1", "imp-2"] and derived.startswith("import-")
    by_id = {item["comment_id"]: item for item in items(queue)}
    assert set(by_id) == {"imp-1", "imp-2", derived}
    assert all(item["source"] == "import" for item in by_id.values())
    # The quoted multi-line text survives as written, and its title is shown from the stored article.
    assert by_id["imp-1"]["text"] == "للتواصل واتساب ٠٥٥١٢٣٤٥٦٧\nربح مضمون"
    assert by_id["imp-1"]["article"]["title"] == POLITICS_TITLE
    assert by_id["imp-2"]["article"]["id"] == "pol-9"
    assert by_id["imp-1"]["label"] == "spam"
    store = store_of(queue)
    (audit,) = store.audit_for("imp-2", "elaph")
    assert (audit.source, audit.model_version) == ("import", "0-test")
    # Importing the same export again does not duplicate the queue: the latest scoring wins.
    again = queue.post(
        "/v1/queue/import", files={"file": ("export.csv", CSV_EXPORT.encode())}, headers=csrf_header(csrf)
    )
    assert again.status_code == 201 and len(items(queue)) == 3


def test_import_jsonl_and_json_records(queue: TestClient) -> None:
    csrf = login(queue)
    lines = [
        {"comment_id": 7, "text": SPAM[2], "site": "elaph"},
        {
            "comment_id": "j-2",
            "text": ON_POLITICS[1],
            "article_title": POLITICS_TITLE,
            "article_text": POLITICS_BODY,
        },
    ]
    jsonl = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n\n"
    upload = queue.post(
        "/v1/queue/import", files={"file": ("export.jsonl", jsonl.encode())}, headers=csrf_header(csrf)
    )
    assert upload.status_code == 201, upload.text
    assert upload.json()["comment_ids"] == ["7", "j-2"]
    body = queue.post(
        "/v1/queue/import",
        json={"records": [{"comment_id": "b-1", "text": ABUSIVE[0]}]},
        headers=csrf_header(csrf),
    )
    assert body.status_code == 201
    raw = queue.post(
        "/v1/queue/import",
        content=json.dumps({"comment_id": "r-1", "text": SPAM[4]}, ensure_ascii=False).encode(),
        headers={**csrf_header(csrf), "Content-Type": "application/x-ndjson"},
    )
    assert raw.status_code == 201
    assert set(ids(items(queue))) == {"7", "j-2", "b-1", "r-1"}


@pytest.mark.parametrize(
    ("filename", "content", "code", "line", "field"),
    [
        ("bad.csv", "comment_id,text\nc-1,fine\nc-2,\n", "empty_text", 3, "text"),
        ("bad.csv", "comment_id,text,site\nc-1,fine,elaph\nc-2,two,elaph,extra\n", "invalid_csv", 3, None),
        ("bad.csv", "comment_id,body\nc-1,fine\n", "missing_field", 1, "text"),
        ("bad.csv", 'comment_id,text\nc-1,"never closed\n', "invalid_csv", 2, None),
        ("bad.jsonl", '{"text": "fine"}\n{"text": \n', "invalid_json", 2, None),
        ("bad.jsonl", '{"text": "fine"}\n\n["a list"]\n', "invalid_type", 3, None),
        ("bad.jsonl", '{"text": "fine"}\n{"comment_id": "c-2"}\n', "missing_field", 2, "text"),
        ("bad.jsonl", '{"text": "fine"}\n{"text": "ok", "site": 5}\n', "invalid_type", 2, "site"),
        ("bad.jsonl", '{"text": "fine"}\n{"text": "' + "x" * 10_001 + '"}\n', "text_too_long", 2, "text"),
    ],
)
def test_a_bad_import_is_422_naming_line_and_field(
    queue: TestClient, filename: str, content: str, code: str, line: int, field: str | None
) -> None:
    csrf = login(queue)
    response = queue.post(
        "/v1/queue/import", files={"file": (filename, content.encode())}, headers=csrf_header(csrf)
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["field"] == field
    assert body["line"] == line
    assert body["error"]["message"].startswith(f"line {line}")
    # All or nothing: the good rows before the bad one were not imported either.
    assert items(queue) == []


def test_import_refuses_bad_encoding_type_and_size(make_client: MakeClient) -> None:
    client = make_client(moderator_keys=MODERATORS, session_secret=SECRET, max_batch_items=3)
    csrf = login(client)
    latin1 = "comment_id,text\nc-1,ok\nc-2,caf\xe9\n".encode("latin-1")
    encoding = client.post("/v1/queue/import", files={"file": ("x.csv", latin1)}, headers=csrf_header(csrf))
    assert encoding.status_code == 422 and encoding.json()["error"]["code"] == "invalid_encoding"
    assert encoding.json()["line"] == 3
    many = [{"text": f"comment {i}"} for i in range(4)]
    too_many = client.post("/v1/queue/import", json=many, headers=csrf_header(csrf))
    assert too_many.status_code == 413 and too_many.json()["error"]["code"] == "too_many_items"
    empty = client.post(
        "/v1/queue/import", files={"file": ("x.csv", b"comment_id,text\n")}, headers=csrf_header(csrf)
    )
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "empty_import"
    in_body = client.post("/v1/queue/import", json=[{"text": "ok"}, {"text": ""}], headers=csrf_header(csrf))
    assert in_body.status_code == 422 and in_body.json()["error"]["message"].startswith("records[1]")
    assert in_body.json()["errors"][0]["where"] == "records[1]"
    other = client.post(
        "/v1/queue/import", content=b"hello", headers={**csrf_header(csrf), "Content-Type": "text/plain"}
    )
    assert other.status_code == 415
    no_file = client.post(
        "/v1/queue/import",
        data={"note": "x"},
        files={"other": ("x.csv", b"text\nhi\n")},
        headers=csrf_header(csrf),
    )
    assert no_file.status_code == 422 and no_file.json()["error"]["field"] == "file"
    assert items(client) == []


# --- page, headers, languages -------------------------------------------------------------------


def test_security_headers_on_queue_pages_json_and_assets(queue: TestClient) -> None:
    login(queue)
    for path in (
        "/queue",
        "/queue/login?lang=en",
        "/v1/queue/items",
        "/static/queue.js",
        "/static/queue.css",
    ):
        response = queue.get(path, follow_redirects=False)
        assert response.status_code in (200, 303), path
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
    assert queue.get("/queue").headers["cache-control"] == "no-store"
    assert queue.get("/v1/queue/items").headers["cache-control"] == "no-store"
    assert "content-security-policy" not in queue.get("/healthz").headers
    unauthorized = queue.get("/v1/queue/items", headers={"Authorization": "Bearer wrong"})
    assert unauthorized.headers["x-frame-options"] == "DENY"


def test_pages_have_no_inline_script_and_assets_are_local(queue: TestClient) -> None:
    login(queue)
    for path in ("/queue", "/queue/login"):
        page = queue.get(path).text if path == "/queue" else queue.get(path, follow_redirects=True).text
        for tag in re.findall(r"<script[^>]*>", page):
            assert 'src="/static/' in tag or 'type="application/json"' in tag, tag
        assert "http://" not in page and "https://" not in page
        assert " style=" not in page and "<style" not in page
        for asset in re.findall(r'(?:src|href)="(/static/[^"?]+)', page):
            assert queue.get(asset).status_code == 200, asset
    js = queue.get("/static/queue.js")
    assert js.headers["content-type"].startswith("text/javascript")
    assert "Array.from(text)" in js.text
    for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in js.text, sink


def test_arabic_and_english_interfaces(make_client: MakeClient) -> None:
    client = make_client(moderator_keys=MODERATORS, session_secret=SECRET)
    strings = ui_strings()
    assert strings["ar"].keys() == strings["en"].keys()
    arabic = client.get("/queue/login")
    assert '<html lang="ar" dir="rtl">' in arabic.text
    assert strings["ar"]["login_title"] in arabic.text and strings["ar"]["sign_in"] in arabic.text
    english = client.get("/queue/login", params={"lang": "en"})
    assert '<html lang="en" dir="ltr">' in english.text
    assert strings["en"]["login_title"] in english.text and "Sign in" in english.text
    assert any(c.startswith("raqib_lang=en") for c in english.headers.get_list("set-cookie"))
    # The choice is remembered.
    assert '<html lang="en" dir="ltr">' in client.get("/queue/login").text
    login(client)
    page = client.get("/queue")
    assert '<html lang="en" dir="ltr">' in page.text and strings["en"]["shortcuts"] in page.text
    page = client.get("/queue", params={"lang": "ar"})
    assert '<html lang="ar" dir="rtl">' in page.text and strings["ar"]["shortcuts"] in page.text
    # Both languages ride along for the in-page switch.
    data = re.search(r'<script type="application/json" id="raqib-strings">(.*?)</script>', page.text, re.S)
    assert data is not None and json.loads(data.group(1)) == strings
    client.cookies.clear()
    browser = client.get("/queue/login", headers={"Accept-Language": "en-GB,en;q=0.9,ar;q=0.5"})
    assert '<html lang="en" dir="ltr">' in browser.text


# The plural categories CLDR's rules use for cardinal numbers in each interface language
# (https://www.unicode.org/cldr/charts/latest/supplemental/language_plural_rules.html), which is
# what the browser's Intl.PluralRules picks between.
PLURAL_CATEGORIES = {
    "ar": {"zero", "one", "two", "few", "many", "other"},
    "en": {"one", "other"},
}


def test_every_plural_string_has_every_form_its_language_needs() -> None:
    strings = ui_strings()
    assert strings.keys() == PLURAL_CATEGORIES.keys()
    plural_keys = {
        lang: {key for key, text in table.items() if isinstance(text, dict)}
        for lang, table in strings.items()
    }
    # The sentences that count comments are plural in both languages ("1 comments" was the bug).
    assert plural_keys["ar"] == plural_keys["en"] >= {"imported", "shadow_summary"}
    for lang, table in strings.items():
        for key in plural_keys[lang]:
            forms = table[key]
            assert isinstance(forms, dict)
            assert set(forms) == PLURAL_CATEGORIES[lang], (lang, key)
            assert all(isinstance(form, str) and form.strip() for form in forms.values()), (lang, key)
            # A form may spell the number out ("تعليق واحد", "تعليقين") but names nothing else.
            allowed = set(re.findall(r"{(\w+)}", forms["other"]))
            assert "n" in allowed, (lang, key)
            for category, form in forms.items():
                assert set(re.findall(r"{(\w+)}", form)) <= allowed, (lang, key, category)


def test_queue_routes_are_documented_and_pages_are_not(queue: TestClient) -> None:
    paths = queue.get("/openapi.json").json()["paths"]
    for path in ("/v1/queue/items", "/v1/queue/decisions", "/v1/queue/undo", "/v1/queue/import"):
        assert path in paths
    assert "/queue" not in paths and "/queue/login" not in paths


def test_queue_shows_shadow_agreement_and_disagreements(
    make_client: MakeClient, tiny_pipeline: Any, tmp_path: Any
) -> None:
    from tests.api.test_shadow_api import write_challenger

    challenger = write_challenger(tiny_pipeline, tmp_path / "challenger")
    client = make_client(moderator_keys=MODERATORS, session_secret=SECRET, shadow_model_dir=challenger)
    login(client)
    assert 'id="shadow"' in client.get("/queue").text
    for i, text in enumerate(["الهلال بطل الدوري هذا الموسم", "يا حمار يا جاهل اسكت"]):
        score(client, f"sh-{i}", text)
    body = client.get("/v1/queue/shadow").json()
    assert body["champion"]["version"] == "0-test"
    shadow = body["shadow"]
    assert shadow["compared"] == 2 and 0 <= shadow["agreement_rate"] < 1
    assert {d["comment_id"] for d in shadow["disagreements"]} <= {"sh-0", "sh-1"}
    assert shadow["disagreements"], "the challenger rejects everything, so the approved comment disagrees"


def test_queue_shadow_is_null_without_a_shadow(queue: TestClient) -> None:
    login(queue)
    assert queue.get("/v1/queue/shadow").json()["shadow"] is None
