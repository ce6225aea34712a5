"""The user's path through the CLI: train → promote → export → evaluate, on the starter corpus."""

import json

import pytest
from typer.testing import CliRunner

from tests.conftest import REPO

pytestmark = [pytest.mark.model, pytest.mark.slow]

CONFIG = """
name = "cli-test"
cv_folds = 2
[data]
starter = "data/starter"
labeled_dir = ""
[features]
min_df = 1
lsa_components = 30
[[candidates]]
kind = "logreg"
params = { C = 10.0 }
[[candidates]]
kind = "complement_nb"
params = { alpha = 0.3 }
"""


def test_train_promote_export_evaluate(tmp_path, monkeypatch) -> None:
    import mlflow

    from training.cli.main import app

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(REPO)
    config = tmp_path / "cli.toml"
    config.write_text(CONFIG, encoding="utf-8")
    runner = CliRunner()
    try:
        trained = runner.invoke(app, ["train", "--config", str(config)])
        assert trained.exit_code == 0, trained.output
        assert "Frozen evaluation set" in trained.output and "challenger" in trained.output
        assert "logreg" in trained.output and "complement_nb" in trained.output

        promoted = runner.invoke(app, ["promote"])
        assert promoted.exit_code == 0 and "promoted version 1" in " ".join(promoted.output.split())

        bundle = tmp_path / "champion"
        exported = runner.invoke(app, ["export", "-o", str(bundle)])
        assert exported.exit_code == 0, exported.output
        metadata = json.loads((bundle / "metadata.json").read_text(encoding="utf-8"))
        assert metadata["version"] == "1" and metadata["experiment"] == "cli-test"

        labelled = tmp_path / "eval.jsonl"
        labelled.write_text(
            json.dumps({"text": "للتواصل واتساب 0551234567 ربح مضمون", "label": "spam"}, ensure_ascii=False)
            + "\n"
            + json.dumps({"text": "يا حمار يا جاهل", "label": "abusive"}, ensure_ascii=False)
            + "\n",
            encoding="utf-8",
        )
        evaluated = runner.invoke(app, ["evaluate", "--data", str(labelled), "--model", str(bundle)])
        assert evaluated.exit_code == 0, evaluated.output
        assert "macro-F1" in evaluated.output

        missing = runner.invoke(
            app, ["evaluate", "--data", str(tmp_path / "nope.jsonl"), "--model", str(bundle)]
        )
        assert missing.exit_code == 1 and "file not found" in " ".join(missing.output.split())

        again = runner.invoke(app, ["promote"])
        assert again.exit_code == 2 and "already champion" in " ".join(again.output.split())
    finally:
        mlflow.set_tracking_uri("")
