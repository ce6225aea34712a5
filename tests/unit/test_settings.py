"""Service settings: defaults, RAQIB_* environment, TOML file, precedence, secrets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from serving.settings import SETTINGS_FILE_ENV, Settings, SettingsError, load_settings

pytestmark = pytest.mark.unit

TOML = """
model_dir = "/srv/raqib/models/champion"
api_keys = ["file-key-1", "file-key-2"]
max_text_chars = 5000
max_batch_items = 200

[sites.aljazeera]
reject_at = {spam = 0.97}
review_at = {off_topic = 0.6}
trusted_authors = ["editor-1"]
mode = "observe"
"""


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RAQIB_") and name != "RAQIB_SHARED":
            monkeypatch.delenv(name)


@pytest.fixture
def settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "raqib.toml"
    path.write_text(TOML, encoding="utf-8")
    monkeypatch.setenv(SETTINGS_FILE_ENV, str(path))
    return path


def test_defaults() -> None:
    settings = load_settings()
    assert settings.model_dir == Path("models/champion")
    assert settings.model_uri is None
    assert settings.api_keys == [] and settings.resolved_api_keys() == ()
    assert settings.resolved_admin_key() is None
    assert settings.state_dir == Path("var")
    assert settings.require_auth_for_health is False
    assert (settings.max_text_chars, settings.max_batch_items) == (10_000, 1000)
    assert (settings.max_body_bytes, settings.max_batch_body_bytes) == (65_536, 4 * 1024 * 1024)
    assert settings.sites == {}


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAQIB_MODEL_DIR", "/tmp/bundle")
    monkeypatch.setenv("RAQIB_API_KEYS", "k1, k2,,k3")
    monkeypatch.setenv("RAQIB_ADMIN_KEY", "adm")
    monkeypatch.setenv("RAQIB_REQUIRE_AUTH_FOR_HEALTH", "true")
    monkeypatch.setenv("RAQIB_SITES", '{"news": {"mode": "observe", "trusted_authors": ["x"]}}')
    settings = load_settings()
    assert settings.model_dir == Path("/tmp/bundle")
    assert settings.resolved_api_keys() == ("k1", "k2", "k3")
    assert settings.resolved_admin_key() == "adm"
    assert settings.require_auth_for_health is True
    assert settings.sites["news"].mode == "observe"
    assert settings.sites["news"].trusted_authors == ["x"]


def test_toml_file(settings_file: Path) -> None:
    settings = load_settings()
    assert settings.model_dir == Path("/srv/raqib/models/champion")
    assert settings.resolved_api_keys() == ("file-key-1", "file-key-2")
    assert settings.max_text_chars == 5000
    site = settings.sites["aljazeera"]
    assert site.reject_at == {"spam": 0.97} and site.review_at == {"off_topic": 0.6}
    assert site.trusted_authors == ["editor-1"] and site.mode == "observe"


def test_environment_wins_over_file(settings_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAQIB_MAX_TEXT_CHARS", "99")
    monkeypatch.setenv("RAQIB_API_KEYS", "env-key")
    monkeypatch.setenv("RAQIB_SITES__aljazeera__mode", "enforce")
    settings = load_settings()
    assert settings.max_text_chars == 99
    assert settings.max_batch_items == 200  # from the file, untouched by the environment
    assert settings.resolved_api_keys() == ("env-key",)
    site = settings.sites["aljazeera"]
    assert site.mode == "enforce" and site.reject_at == {"spam": 0.97}  # merged, not replaced


def test_explicit_arguments_win_over_everything(settings_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAQIB_MAX_TEXT_CHARS", "99")
    assert load_settings(max_text_chars=7).max_text_chars == 7


def test_missing_settings_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(SETTINGS_FILE_ENV, str(tmp_path / "absent.toml"))
    with pytest.raises(SettingsError, match=r"absent\.toml"):
        load_settings()


@pytest.mark.parametrize(
    "bad",
    [
        {"max_text_chars": 0},
        {"sites": {"x": {"reject_at": {"spam": 1.5}}}},
        {"sites": {"x": {"mode": "shadow"}}},
        {"sites": {"x": {"reject": {"spam": 0.5}}}},  # a typo in a key is refused, not ignored
        {"model_uri": "runs:/abc/model"},
        {"no_such_setting": 1},
    ],
)
def test_invalid_values_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)


def test_unknown_key_in_toml_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "typo.toml"
    path.write_text('modle_dir = "x"\n', encoding="utf-8")
    monkeypatch.setenv(SETTINGS_FILE_ENV, str(path))
    with pytest.raises(ValidationError, match="modle_dir"):
        load_settings()


def test_key_files(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# rotated 2025-01\nkey-a\n  key-b  \n\nkey-a\n", encoding="utf-8")
    admin = tmp_path / "admin"
    admin.write_text("\nadmin-from-file\n", encoding="utf-8")
    settings = Settings(api_keys=["inline"], api_keys_file=keys, admin_key_file=admin)
    assert settings.resolved_api_keys() == ("inline", "key-a", "key-b")
    assert settings.resolved_admin_key() == "admin-from-file"
    assert Settings(admin_key="inline-admin", admin_key_file=admin).resolved_admin_key() == "inline-admin"


def test_unreadable_key_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="api_keys"):
        Settings(api_keys_file=tmp_path / "absent").resolved_api_keys()


def test_secrets_do_not_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAQIB_API_KEYS", "very-secret-key")
    monkeypatch.setenv("RAQIB_ADMIN_KEY", "very-secret-admin")
    settings = load_settings()
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "very-secret" not in text
