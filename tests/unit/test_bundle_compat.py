"""Bundles exported before the layout change pickled their transformers as `serving.features.<Name>`."""

import pickle

import pytest

pytestmark = pytest.mark.unit

# Every global a bundle exported by the previous layout refers to (read off such a bundle's pickle).
LEGACY_GLOBALS = (
    "ArticleRelation",
    "CommentPreprocessor",
    "HashedNgrams",
    "SequentialFeatureUnion",
    "SpamSignals",
    "TextNgrams",
    "_content_analyzer",
)


@pytest.mark.parametrize("name", LEGACY_GLOBALS)
def test_a_pickle_naming_the_old_features_module_still_resolves(name: str) -> None:
    # Protocol-0 GLOBAL opcode: exactly the reference an old model.joblib holds.
    reference = pickle.loads(f"cserving.features\n{name}\n.".encode())
    assert reference.__name__ == name
    assert reference.__module__.startswith("serving.features.")
