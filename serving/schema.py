"""The canonical record shared by training data, the model's input and feedback exports."""

from __future__ import annotations

# Every labelled record, every export and the model's input DataFrame use these names.
CANONICAL_COLUMNS: tuple[str, ...] = (
    "comment_id",
    "text",
    "label",
    "article_id",
    "article_title",
    "article_text",
    "author",
    "site",
    "source",
    "created_at",
)

# The columns the model reads; the rest ride along for grouping, reporting and audit.
MODEL_INPUT_COLUMNS: tuple[str, ...] = ("text", "article_title", "article_text")

ON_TOPIC = "on_topic"
OFF_TOPIC = "off_topic"
SPAM = "spam"
ABUSIVE = "abusive"
DEFAULT_LABELS: tuple[str, ...] = (ON_TOPIC, OFF_TOPIC, SPAM, ABUSIVE)

# The label that means "fine to publish"; every other label is a reason to hold a comment.
ACCEPTABLE_LABEL = ON_TOPIC
