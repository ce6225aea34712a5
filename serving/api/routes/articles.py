"""PUT and GET /v1/articles/{id}: the articles comments are judged against, kept so CMSs can send an id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from serving.api.deps import (
    CallerDep,
    ServiceDep,
    StoreDep,
    enforce_rate_limit,
    require_api_key,
    store_failed,
)
from serving.services.articles import article_out
from serving.services.errors import ApiError
from serving.services.schemas import ArticleOut, ArticlePut, error_responses
from serving.store.errors import StoreError
from serving.store.records import Article

ARTICLES_PREFIX = "/v1/articles/"

router = APIRouter(
    tags=["articles"],
    dependencies=[Depends(require_api_key)],
    responses=error_responses(
        401,
        422,
        429,
        described={
            # An empty id, or "." / ".." that clients resolve away, leaves a URL no route matches.
            404: "No such article (article_not_found), or no article id in the URL (not_found).",
            503: "The store is unavailable or refused the write (store_unavailable).",
        },
    ),
)

SiteQuery = Annotated[str | None, Query(description="The site the id belongs to.")]


@router.put(
    "/v1/articles/{article_id:path}",
    response_model=ArticleOut,
    summary="Store an article",
    responses=error_responses(400, 413, 415),
)
def put_article(
    article_id: str,
    body: ArticlePut,
    request: Request,
    service: ServiceDep,
    caller: CallerDep,
    store: StoreDep,
) -> ArticleOut:
    """Insert or replace the article (title, text, url) under its id and site; on disk when answered."""
    enforce_rate_limit(request, service, caller, body.site)
    article = Article(
        article_id=article_id, site=body.site, title=body.title, text=body.text, url=body.url, source="api"
    )
    try:
        return article_out(store.put_article(article))
    except StoreError as exc:
        raise store_failed(exc) from None


@router.get(
    "/v1/articles/{article_id:path}",
    response_model=ArticleOut,
    summary="A stored article",
)
def get_article(
    article_id: str,
    request: Request,
    service: ServiceDep,
    caller: CallerDep,
    store: StoreDep,
    site: SiteQuery = None,
) -> ArticleOut:
    """The article with this id on `site` (else one stored without a site); 404 when unknown."""
    enforce_rate_limit(request, service, caller, site)
    try:
        article = store.get_article(article_id, site)
    except StoreError as exc:
        raise store_failed(exc) from None
    if article is None:
        raise ApiError(404, "article_not_found", f"no article {article_id!r} is stored", field="id")
    return article_out(article)
