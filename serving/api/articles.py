"""PUT and GET /v1/articles/{id}: the articles comments are judged against, kept so CMSs can send an id."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from serving.api.deps import StoreDep, require_api_key, store_failed
from serving.api.errors import ApiError
from serving.api.schemas import ArticleOut, ArticlePut, ErrorResponse
from serving.store import Article, StoreError

ARTICLES_PREFIX = "/v1/articles/"

router = APIRouter(
    tags=["articles"],
    dependencies=[Depends(require_api_key)],
    responses={
        401: {"model": ErrorResponse, "description": "Missing or invalid API key."},
        503: {"model": ErrorResponse, "description": "The store is unavailable (store_unavailable)."},
    },
)

SiteQuery = Annotated[str | None, Query(description="The site the id belongs to.")]


def article_out(article: Article) -> ArticleOut:
    """The API view of a stored article."""
    return ArticleOut(
        id=article.article_id,
        site=article.site,
        title=article.title,
        text=article.text,
        url=article.url,
        updated_at=article.updated_at,
    )


_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such article."}
}


# `:path` so ids containing slashes (some CMSs use paths as ids) still reach the handler.
@router.put("/v1/articles/{article_id:path}", response_model=ArticleOut, summary="Store an article")
def put_article(article_id: str, body: ArticlePut, store: StoreDep) -> ArticleOut:
    """Insert or replace the article (title, text, url) under its id and site; on disk when answered."""
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
    responses=_NOT_FOUND,
)
def get_article(article_id: str, store: StoreDep, site: SiteQuery = None) -> ArticleOut:
    """The article with this id on `site` (else one stored without a site); 404 when unknown."""
    try:
        article = store.get_article(article_id, site)
    except StoreError as exc:
        raise store_failed(exc) from None
    if article is None:
        raise ApiError(404, "article_not_found", f"no article {article_id!r} is stored", field="id")
    return article_out(article)
