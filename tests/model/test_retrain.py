"""The retrain loop: feedback on a new campaign is learned and promoted; shuffled labels are not."""

import json
import random

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.model, pytest.mark.slow]

GIFTS = [
    "بطاقة شحن بلايستيشن",
    "رصيد سوا",
    "بطاقة جوجل بلاي",
    "رصيد زين",
    "قسيمة نون",
    "بطاقة ايتونز",
    "رصيد موبايلي",
    "كوبون امازون",
]
ASKS = [
    "اكتب كلمة هدية في الخاص",
    "ارسل كلمة مبروك لصفحتنا",
    "علّق بكلمة تم واستلم",
    "اضغط متابعة واكتب اسمك",
    "شارك المنشور وانتظر رسالتنا",
]
# A scam the starter corpus has never seen: no phone number, no link, just a fake giveaway.
CAMPAIGN = [f"مبروك لأول مئة متابع: {g} مجانا، {a}" for g in GIFTS for a in ASKS]
REPORTED, UNSEEN = CAMPAIGN[::4] + CAMPAIGN[1::4] + CAMPAIGN[2::4], CAMPAIGN[3::4]


@pytest.fixture()
def loop(tmp_path, monkeypatch):
    """A private MLflow store, a store for feedback, and the starter config with one candidate."""
    import mlflow

    from training.experiment.config import CandidateConfig, load_config

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    config = load_config(REPO / "experiments" / "starter.toml")
    config = config.model_copy(
        update={
            "candidates": (CandidateConfig(kind="logreg", params={"C": 10.0}),),
            "data": config.data.model_copy(update={"labeled_dir": None}),
        }
    )
    yield tmp_path, config
    mlflow.set_tracking_uri("")


def _starter_on_topic(n: int) -> list[dict]:
    rows = [
        json.loads(line) for line in (REPO / "data/starter/comments.jsonl").read_text("utf-8").splitlines()
    ]
    return [r for r in rows if r["label"] == "on_topic" and r["article_id"]][:n]


def _feedback_store(tmp_path, entries):
    from serving.store.engine import default_store_url
    from serving.store.records import FeedbackEntry
    from serving.store.store import Store

    url = default_store_url(tmp_path / "state")
    (tmp_path / "state").mkdir(exist_ok=True)
    store = Store.open(url)
    for i, (text, label) in enumerate(entries):
        store.record_feedback(
            FeedbackEntry(
                comment_id=f"fb-{i:03d}",
                label=label,
                source="queue",
                site="sahat",
                moderator="mona",
                text=text,
            )
        )
    store.close()
    return url


def test_new_spam_campaign_is_learned_and_promoted(loop) -> None:
    from serving.model.moderation import ModerationModel
    from training.labels.retrain import campaign_catch_rate, retrain

    tmp_path, config = loop
    first = retrain(config, root=REPO, store_url=None, export_dir=tmp_path / "champion")
    assert first.promoted and first.reason == "no champion yet"
    before = campaign_catch_rate(ModerationModel.from_bundle(tmp_path / "champion").pipeline, UNSEEN)

    genuine = [(r["text"], "on_topic") for r in _starter_on_topic(20)]
    entries = [(t, "spam") for t in REPORTED] + genuine
    random.Random(0).shuffle(entries)
    url = _feedback_store(tmp_path, entries)
    report = retrain(config, root=REPO, store_url=url, export_dir=tmp_path / "champion")

    assert report.promoted, report.reason
    assert report.feedback_total == len(entries) and report.feedback_held_out >= 1
    after = campaign_catch_rate(ModerationModel.from_bundle(tmp_path / "champion").pipeline, UNSEEN)
    assert before <= 0.2 and after >= 0.8
    # The report shows it: spam recall on the held-out recent feedback, champion vs challenger.
    spam_rows = [c for c in report.comparisons if c.metric == "recall[spam]"]
    assert spam_rows and spam_rows[0].challenger > (spam_rows[0].champion or 0)
    assert "recall[spam]" in report.to_markdown()


def test_challenger_trained_on_shuffled_labels_is_not_promoted(loop) -> None:
    from training.labels.retrain import retrain

    tmp_path, config = loop
    first = retrain(config, root=REPO, export_dir=tmp_path / "champion")
    assert first.promoted
    rows = [
        json.loads(line) for line in (REPO / "data/starter/comments.jsonl").read_text("utf-8").splitlines()
    ]
    articles = {
        a["article_id"]: a
        for a in map(json.loads, (REPO / "data/starter/articles.jsonl").read_text("utf-8").splitlines())
    }
    labels = [r["label"] for r in rows]
    random.Random(1).shuffle(labels)
    labeled = tmp_path / "labeled"
    labeled.mkdir()
    with (labeled / "shuffled.jsonl").open("w", encoding="utf-8") as out:
        for row, label in zip(rows, labels, strict=True):
            article = articles.get(row["article_id"] or "", {})
            out.write(
                json.dumps(
                    row
                    | {
                        "label": label,
                        "article_title": article.get("title"),
                        "article_text": article.get("text"),
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
    shuffled = config.model_copy(
        update={"data": config.data.model_copy(update={"starter": None, "labeled_dir": str(labeled)})}
    )
    report = retrain(shuffled, root=REPO, export_dir=tmp_path / "champion")
    assert not report.promoted
    frozen = next(c for c in report.comparisons if c.evaluation == "frozen evaluation set")
    assert not frozen.passes
    from mlflow import MlflowClient

    champion = MlflowClient().get_model_version_by_alias(config.registered_model, "champion")
    assert str(champion.version) == first.challenger_version
