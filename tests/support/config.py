"""Write a complete intake.toml + groups.toml for a test, pointing at the test servers."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@dataclass
class MailboxSpec:
    name: str
    username: str
    password: str
    host: str = "127.0.0.1"
    port: int = 0
    security: str = "none"
    group: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _default_database(directory: Path) -> str:
    from tests.support.pg import fresh_postgres_url, use_postgres

    return fresh_postgres_url() if use_postgres() else f"sqlite:///{directory / 'intake.db'}"


def write_config(
    directory: Path,
    *,
    mailboxes: list[MailboxSpec],
    database_url: str | None = None,
    smtp_port: int = 1025,
    sections: dict[str, dict[str, Any]] | None = None,
    groups_toml: str | None = None,
) -> Path:
    """Write directory/intake.toml (+ groups.toml, privacy notice); return its path.

    `sections` adds or overrides keys, e.g. {"ack": {"window_hours": 1}}. The groups file
    defaults to the shipped config/groups.toml.
    """
    directory.mkdir(parents=True, exist_ok=True)
    merged: dict[str, dict[str, Any]] = {
        "database": {"url": database_url or _default_database(directory)},
        "worker": {"poll_interval": 60, "jitter": 0},
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "security": "none",
                 "from_address": "Building Leadership for Inclusion <blfi@example.org>"},
        "groups": {"file": "groups.toml"},
        "demo": {"enabled": False},
    }
    for section, values in (sections or {}).items():
        merged.setdefault(section, {}).update(values)
    lines: list[str] = []
    for section, values in merged.items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
        lines.append("")
    for mb in mailboxes:
        lines.append("[[mailboxes]]")
        entry = {"name": mb.name, "host": mb.host, "port": mb.port, "security": mb.security,
                 "username": mb.username, "password": mb.password, **({"group": mb.group} if mb.group else {}), **mb.extra}
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in entry.items())
        lines.append("")
    path = directory / "intake.toml"
    path.write_text("\n".join(lines))
    if groups_toml is None:
        shutil.copy(REPO / "config" / "groups.toml", directory / "groups.toml")
    else:
        (directory / "groups.toml").write_text(groups_toml)
    shutil.copy(REPO / "config" / "privacy_notice.txt", directory / "privacy_notice.txt")
    return path
