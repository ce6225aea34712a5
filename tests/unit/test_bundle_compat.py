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


def _inputs() -> list:
    from serving.model.moderation import CommentInput

    return [
        CommentInput("واتساب 0551234567 ربح مضمون"),
        CommentInput("الموازنة لا تكفي الرواتب", "الحكومة تعلن موازنة جديدة", "أعلنت الحكومة موازنة العام"),
    ]


def test_a_new_bundle_is_a_plain_pickle_and_scores_like_its_pipeline(tiny_pipeline, tmp_path) -> None:
    from serving.model.bundle import MODEL_FILE, read_bundle_metadata
    from serving.model.moderation import ModerationModel
    from tests.conftest import write_tiny_bundle

    bundle = write_tiny_bundle(tiny_pipeline, tmp_path / "bundle")
    assert read_bundle_metadata(bundle)["model_format"] == "pickle"
    with (bundle / MODEL_FILE).open("rb") as handle:
        assert type(pickle.load(handle)) is type(tiny_pipeline)  # the standard unpickler reads it
    loaded = ModerationModel.from_bundle(bundle)
    direct = ModerationModel(tiny_pipeline, read_bundle_metadata(bundle))
    assert [s.scores for s in loaded.score(_inputs())] == [s.scores for s in direct.score(_inputs())]


def test_a_bundle_written_by_joblib_before_still_loads(tiny_pipeline, tmp_path) -> None:
    import json

    import joblib

    from serving.model.bundle import METADATA_FILE, MODEL_FILE, read_bundle_metadata, sha256_file
    from serving.model.moderation import ModerationModel
    from tests.conftest import write_tiny_bundle

    bundle = write_tiny_bundle(tiny_pipeline, tmp_path / "bundle")
    new = ModerationModel.from_bundle(bundle)
    joblib.dump(tiny_pipeline, bundle / MODEL_FILE)  # what write_bundle used to do
    metadata = read_bundle_metadata(bundle)
    del metadata["model_format"]
    metadata["sha256"] = sha256_file(bundle / MODEL_FILE)
    (bundle / METADATA_FILE).write_text(json.dumps(metadata), encoding="utf-8")
    old = ModerationModel.from_bundle(bundle)
    assert [s.scores for s in old.score(_inputs())] == [s.scores for s in new.score(_inputs())]


def test_a_pickle_bundle_whose_bytes_changed_is_refused_before_unpickling(tiny_pipeline, tmp_path) -> None:
    from serving.model.bundle import MODEL_FILE, BundleError
    from serving.model.moderation import ModerationModel
    from tests.conftest import write_tiny_bundle

    bundle = write_tiny_bundle(tiny_pipeline, tmp_path / "bundle")
    # Replaced by a pickle that would run code when loaded: the checksum must stop it first.
    (bundle / MODEL_FILE).write_bytes(pickle.dumps(_Trap()))
    with pytest.raises(BundleError, match="does not match metadata"):
        ModerationModel.from_bundle(bundle)


class _Trap:
    def __reduce__(self) -> tuple:
        return (pytest.fail, ("the tampered pickle was unpickled",))
