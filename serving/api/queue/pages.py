"""The queue's HTML pages: the login form, signing in and out, and the queue page itself."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.api.queue.auth import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    QueueAuth,
    QueueAuthDep,
    new_login_token,
    tokens_match,
)
from serving.api.queue.i18n import choose_language, remember_language, render_page, ui_text
from serving.api.queue.paths import LOGIN_PATH, LOGOUT_PATH, QUEUE_PATH, is_https, root_path
from serving.services.errors import ApiError

logger = logging.getLogger("raqib.queue")

LOGIN_FORM_SECONDS = 3600
FAILED_LOGIN_DELAY = 0.25

LangQuery = Annotated[str | None, Query(description="ar or en; remembered in a cookie.")]

page_router = APIRouter(include_in_schema=False)


def _login_response(
    request: Request, auth: QueueAuth, lang: str, status: int = 200, message: str = "", name: str = ""
) -> HTMLResponse:
    """The login page with a fresh double-submit token (cookie and hidden field)."""
    token = new_login_token()
    if not auth.enabled:
        message, status = "queue_disabled", 403
    body = render_page(
        request,
        "queue_login.html",
        lang,
        login_token=token,
        name=name,
        message_key=message,
        message=ui_text(lang, message),
        message_hidden="" if message else "hidden",
        form_hidden="hidden" if not auth.enabled else "",
    )
    response = HTMLResponse(body, status_code=status)
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=LOGIN_FORM_SECONDS,
        path=root_path(request) + LOGIN_PATH,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    return response


def _redirect(request: Request, path: str) -> RedirectResponse:
    return RedirectResponse(root_path(request) + path, status_code=303)


async def _form_fields(request: Request, *names: str) -> dict[str, str]:
    try:
        form = await request.form(max_files=0, max_fields=10)
    except (StarletteHTTPException, ValueError, KeyError):
        # A malformed form counts as an empty one: its token check then refuses it.
        return {}
    # Only plain fields count; a file smuggled in under a field name is ignored.
    return {name: value for name in names if isinstance(value := form.get(name), str)}


@page_router.get(LOGIN_PATH, response_class=HTMLResponse)
async def login_page(request: Request, auth: QueueAuthDep, lang: LangQuery = None) -> Response:
    """The login form (or straight to the queue when already logged in)."""
    if auth.enabled and auth.session_moderator(request) is not None:
        return _redirect(request, QUEUE_PATH)
    response = _login_response(request, auth, choose_language(request, lang))
    remember_language(response, request, lang)
    return response


@page_router.post(LOGIN_PATH, response_class=HTMLResponse)
async def login(request: Request, auth: QueueAuthDep) -> Response:
    """Check name and key; on success set the signed session cookie and go to the queue."""
    fields = await _form_fields(request, "name", "key", "csrf")
    lang = choose_language(request)
    name = fields.get("name", "").strip()
    if not auth.enabled:
        return _login_response(request, auth, lang)
    if not tokens_match(fields.get("csrf"), request.cookies.get(LOGIN_COOKIE)):
        return _login_response(request, auth, lang, 403, "login_expired", name)
    if not auth.check_login(name, fields.get("key", "")):
        logger.info("queue login refused")
        # A pause per failure slows guessing; keys should be long random strings all the same.
        await asyncio.sleep(FAILED_LOGIN_DELAY)
        return _login_response(request, auth, lang, 401, "login_failed", name)
    logger.info("moderator %s logged in to the queue", name)
    response = _redirect(request, QUEUE_PATH)
    response.set_cookie(
        SESSION_COOKIE,
        auth.issue(name),
        max_age=auth.max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    response.delete_cookie(LOGIN_COOKIE, path=root_path(request) + LOGIN_PATH)
    return response


@page_router.post(LOGOUT_PATH)
async def logout(request: Request, auth: QueueAuthDep) -> Response:
    """End the session in this browser (the form carries the page's CSRF token)."""
    fields = await _form_fields(request, "csrf")
    moderator = auth.session_moderator(request)
    if moderator is not None and not tokens_match(fields.get("csrf"), moderator.csrf):
        raise ApiError(403, "csrf_failed", "missing or wrong CSRF token; reload the queue page")
    response = _redirect(request, LOGIN_PATH)
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=is_https(request)
    )
    return response


@page_router.get(QUEUE_PATH, response_class=HTMLResponse)
async def queue_page(request: Request, auth: QueueAuthDep, lang: LangQuery = None) -> Response:
    """The queue page; without a session, a 303 to the login form."""
    moderator = auth.session_moderator(request) if auth.enabled else None
    if moderator is None or moderator.csrf is None:
        return _redirect(request, LOGIN_PATH)
    language = choose_language(request, lang)
    body = render_page(request, "queue.html", language, csrf=moderator.csrf, moderator=moderator.name)
    response = HTMLResponse(body)
    remember_language(response, request, lang)
    return response
