"""The model's feature transformers: everything between the canonical DataFrame and the classifier.

They live in serving/ because the pickled Pipeline needs them at scoring time; training imports
them to build the Pipeline. All follow scikit-learn's conventions (`__init__` stores parameters,
`fit` returns self, fitted state ends in `_`) and hold no lambdas, so the Pipeline pickles.

Bundles exported before the features were split into modules pickled their transformers as
`serving.features.<Name>`; the names below keep those bundles loading (a test unpickles such a
reference). New bundles record the defining module (serving.features.relation, ...).
"""

from serving.features.ngrams import HashedNgrams, TextNgrams
from serving.features.prepare import CommentPreprocessor, PreparedComments, SequentialFeatureUnion
from serving.features.relation import ArticleRelation, _content_analyzer, article_script
from serving.features.signals import SpamSignals

__all__ = [
    "ArticleRelation",
    "CommentPreprocessor",
    "HashedNgrams",
    "PreparedComments",
    "SequentialFeatureUnion",
    "SpamSignals",
    "TextNgrams",
    "_content_analyzer",
    "article_script",
]
