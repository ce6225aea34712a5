"""Articles as the API shows them."""

from __future__ import annotations

from serving.services.schemas import ArticleOut
from serving.store.records import Article


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


# `:path` so ids containing slashes (some CMSs use paths as ids) still reach the handler.
