"""Config loading and validation: errors name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from intake.config import MAILBOX_SETTINGS, SETTINGS, load_settings
from intake.errors import ConfigError
from tests.support.config import REPO, MailboxSpec, write_config


def _cfg(tmp_path: Path, **kw) -> Path:
    return write_config(tmp_path, mailboxes=[MailboxSpec("swig", "swig@example.org", "pw", port=1143, group="SWIG")], **kw)


def test_shipped_config_loads() -> None:
    settings = load_settings(REPO / "config" / "intake.toml", env={})
    assert [g.code for g in settings.groups] == ["SWIG", "SDIG", "SBAMEIG", "SLGBTIG"]
    assert settings.group("SLGBTIG").display == "SLGBT+IG"
    assert settings["database.url"] == "sqlite:///var/intake.db"
    assert settings["worker.poll_interval"] == 60
    assert {m.name for m in settings.mailboxes} >= {"swig", "sdig", "sbameig", "slgbtig"}


def test_env_overrides_section_and_mailbox_keys(tmp_path: Path) -> None:
    path = _cfg(tmp_path)
    env = {"INTAKE_WORKER_POLL_INTERVAL": "5", "INTAKE_MAILBOXES_SWIG_PASSWORD": "from-env", "INTAKE_ACK_ENABLED": "false"}
    settings = load_settings(path, env=env)
    assert settings["worker.poll_interval"] == 5
    assert settings["ack.enabled"] is False
    assert settings.mailboxes[0].password == "from-env"


def test_password_env(tmp_path: Path) -> None:
    path = write_config(tmp_path, mailboxes=[MailboxSpec("swig", "swig@example.org", "", port=1, extra={"password_env": "SWIG_PW"})])
    assert load_settings(path, env={"SWIG_PW": "s3cret"}).mailboxes[0].password == "s3cret"
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    assert "SWIG_PW" in str(err.value) and "mailboxes[0].password_env" in str(err.value)


@pytest.mark.parametrize(
    "sections, key, words",
    [
        ({"worker": {"poll_interval": "soon"}}, "worker.poll_interval", "whole number"),
        ({"smtp": {"security": "ssl"}}, "smtp.security", "none, starttls, tls"),
        ({"ack": {"enabled": "perhaps"}}, "ack.enabled", "true or false"),
        ({"ack": {"windw_hours": 3}}, "ack.windw_hours", "unknown key"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path: Path, sections, key, words) -> None:
    path = _cfg(tmp_path, sections=sections)
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    message = str(err.value)
    assert str(path) in message and key in message and words in message


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "intake.toml"
    bad.write_text("[database\nurl=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad, env={})
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "nope.toml", env={})


def test_unknown_group_on_mailbox(tmp_path: Path) -> None:
    path = write_config(tmp_path, mailboxes=[MailboxSpec("x", "x@example.org", "pw", port=1, group="SXIG")])
    with pytest.raises(ConfigError, match=r"mailboxes\[0\]\.group"):
        load_settings(path, env={})


def test_groups_file_validated(tmp_path: Path) -> None:
    path = _cfg(tmp_path, groups_toml='[[groups]]\ncode = "SWIG"\nname = "W"\n[[groups.dates]]\nstart = "tuesday"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    assert "groups.toml" in str(err.value) and "groups[0].dates[0].start" in str(err.value)


def test_every_setting_is_documented_in_readme() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in readme]
    missing += [f"mailboxes.{s.key}" for s in MAILBOX_SETTINGS if f"`mailboxes.{s.key}`" not in readme]
    assert not missing, f"settings missing from README.md: {missing}"
