"""The README's "Deploying for NHSmail / Microsoft 365" section says exactly what to fill in: every setting it names exists,
and its example intake.toml (client credentials, then the delegated variant) loads."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

from intake.config import MAILBOX_SETTINGS, SETTINGS, load_settings
from tests.support.config import REPO, _toml_value



class _Section:
    """The README section, read like a file."""

    def read_text(self) -> str:
        text = (REPO / "README.md").read_text()
        start = text.index("## Deploying for NHSmail / Microsoft 365")
        end = text.index("\n## ", start + 3)
        return text[start:end]


DOC = _Section()


def _toml_blocks() -> list[dict]:
    return [tomllib.loads(block) for block in re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S)]


def _write(directory: Path, data: dict) -> Path:
    lines = []
    for section, values in data.items():
        if section == "mailboxes":
            continue
        lines += [f"[{section}]", *(f"{k} = {_toml_value(v)}" for k, v in values.items()), ""]
    for box in data["mailboxes"]:
        lines += ["[[mailboxes]]", *(f"{k} = {_toml_value(v)}" for k, v in box.items()), ""]
    (directory / "intake.toml").write_text("\n".join(lines))
    shutil.copy(REPO / "config" / "groups.toml", directory / "groups.toml")
    return directory / "intake.toml"


def test_every_setting_the_table_names_exists():
    mailbox_keys = {s.key for s in MAILBOX_SETTINGS}
    smtp_keys = {s.key for s in SETTINGS if s.section == "smtp"}
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| `")]
    named = 0
    for row in rows:
        cell = row.split("|")[1]
        known = smtp_keys if "[smtp]" in cell else mailbox_keys
        for key in re.findall(r"`(?:\[smtp\] )?([a-z_]+)`", cell):
            assert key in known, f"{key!r} in {row!r} is not a setting"
            named += 1
    assert named >= 18  # the table is there and was read


def test_the_example_configurations_load(tmp_path):
    full, delegated = _toml_blocks()
    settings = load_settings(_write(tmp_path, full), env={"INTAKE_M365_CLIENT_SECRET": "the-secret-value"})
    box = settings.mailboxes[0]
    assert (box.auth, box.oauth_provider, box.oauth_flow) == ("oauth2", "microsoft", "client_credentials")
    assert box.client_secret == "the-secret-value" and box.client_secret_expires == "2027-06-30"
    assert (settings["smtp.auth"], settings["smtp.oauth_mailbox"], settings["smtp.security"]) == ("oauth2", "swig", "starttls")

    box_data = {k: v for k, v in full["mailboxes"][0].items() if k not in ("client_secret_env", "client_secret_expires")}
    variant = {**full, "mailboxes": [{**box_data, **delegated}]}
    settings = load_settings(_write(tmp_path, variant), env={})
    box = settings.mailboxes[0]
    assert box.oauth_flow == "delegated" and box.client_secret == "" and box.token_cache == "var/tokens/swig.json"
