"""Hand-made spam signals of a comment: links, phones, e-mails, mentions, length, ratios, repetition."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin

from serving.features.prepare import PreparedComments, dense_parts
from serving.text.normalize import (
    EMAIL_TOKEN,
    MENTION_TOKEN,
    PHONE_TOKEN,
    URL_TOKEN,
    dominant_script,
)

_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\ufe0f\u200d\U0001f1e6-\U0001f1ff]")
_RUN = re.compile(r"(.)\1{3,}")
_LATIN_UPPER = re.compile(r"[A-Z]")
_LATIN_LETTER = re.compile(r"[A-Za-z]")
_DIGIT = re.compile(r"\d")


class SpamSignals(TransformerMixin, BaseEstimator):
    """Hand-made spam signals: links, phones, e-mails, mentions, length, ratios, repetition."""

    FEATURES = (
        "sig:url",
        "sig:phone",
        "sig:email",
        "sig:mention",
        "sig:log_length",
        "sig:short",
        "sig:long",
        "sig:digit_ratio",
        "sig:upper_ratio",
        "sig:emoji_ratio",
        "sig:char_runs",
        "sig:repeated_words",
        "sig:exclamations",
        "sig:latin_only",
        "sig:mixed_script",
    )

    def fit(self, X: PreparedComments, y: Any = None) -> SpamSignals:
        """Stateless; present for the Pipeline."""
        self.n_features_out_ = len(self.FEATURES)
        return self

    @staticmethod
    def row(raw: str, text: str) -> list[float]:
        """The signal vector of one comment (raw text for ratios, normalised for masks)."""
        tokens = text.split()
        n_chars = max(len(raw), 1)
        letters = len(_LATIN_LETTER.findall(raw))
        unique_ratio = len(set(tokens)) / len(tokens) if len(tokens) >= 4 else 1.0
        script = dominant_script(text)
        return [
            min(tokens.count(URL_TOKEN), 3) / 3.0,
            min(tokens.count(PHONE_TOKEN), 2) / 2.0,
            min(tokens.count(EMAIL_TOKEN), 2) / 2.0,
            min(tokens.count(MENTION_TOKEN), 3) / 3.0,
            min(math.log1p(len(raw)) / math.log1p(2000), 1.0),
            float(len(tokens) <= 3),
            float(len(raw) > 600),
            len(_DIGIT.findall(raw)) / n_chars,
            len(_LATIN_UPPER.findall(raw)) / letters if letters >= 8 else 0.0,
            min(len(_EMOJI.findall(raw)) / n_chars * 5, 1.0),
            min(len(_RUN.findall(raw)), 3) / 3.0,
            1.0 - unique_ratio,
            min(raw.count("!"), 5) / 5.0,
            float(script == "latin"),
            float(script == "mixed"),
        ]

    def dense(self, X: PreparedComments) -> np.ndarray:
        """The signals as a dense (comments × signals) array."""
        rows = [self.row(raw, text) for raw, text in zip(X.raw_text, X.text, strict=True)]
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), len(self.FEATURES))

    def sparse_parts(self, X: PreparedComments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, column, value) of the non-zero signals."""
        return dense_parts(self.dense(X))

    @property
    def output_width(self) -> int:
        """Number of signals."""
        return len(self.FEATURES)

    def transform(self, X: PreparedComments) -> sp.csr_matrix:
        """Sparse matrix of the signals."""
        return sp.csr_matrix(self.dense(X))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the signals."""
        return np.asarray(self.FEATURES, dtype=object)
