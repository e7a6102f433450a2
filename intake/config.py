"""Settings: a declared, validated, documented table, loaded once and frozen.

Sources, later wins: the declared defaults, ``intake.toml`` (plus ``groups.toml``), then
``INTAKE_<SECTION>_<KEY>`` environment variables (``INTAKE_MAILBOXES_<NAME>_<KEY>`` for one
mailbox). Every problem is a ConfigError naming the file and the key. ``SETTINGS`` is the
table the README documents; a test fails when one is missing there.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

from intake.errors import ConfigError
from intake.groups import Group, GroupDate, load_groups

SECURITY_MODES = ("none", "starttls", "tls")


@dataclass(frozen=True)
class Setting:
    section: str
    key: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"


MAILBOX_SECTION = "mailboxes"

SETTINGS: tuple[Setting, ...] = (
    Setting("database", "url", str, "sqlite:///var/intake.db", "Any SQLAlchemy URL; a relative SQLite path is relative to the working directory."),
    Setting("database", "busy_timeout", int, 30, "Seconds a SQLite writer waits for another writer's lock before giving up (and retrying at the next poll)."),
    Setting("worker", "poll_interval", int, 60, "Seconds between polls of each mailbox."),
    Setting("worker", "jitter", int, 5, "Up to this many seconds of random delay added to each poll, so mailboxes do not all poll at once."),
    Setting("worker", "batch_size", int, 200, "Messages fetched and stored per transaction."),
    Setting("worker", "max_message_bytes", int, 25 * 1024 * 1024, "Messages larger than this are stored and flagged, not parsed in full."),
    Setting("worker", "delivery_interval", int, 10, "Seconds between runs of the outbox delivery job."),
    Setting("worker", "parse_process_after", int, 200, "A poll that finds this many messages waiting parses them in a second process, one batch ahead of storing them (a backlog clears faster on a second core); 0 keeps parsing in the worker."),
    Setting("worker", "delivery_process_after", int, 200, "Once a poll (or `intake run --once`) has queued this many acknowledgements, a second process delivers them while it reads on (a backlog clears faster on a second core); 0 keeps delivery in the worker."),
    Setting("worker", "lease_seconds", int, 300, "A worker's claim on a mailbox expires after this long without renewal (several workers on PostgreSQL)."),
    Setting("smtp", "host", str, "127.0.0.1", "SMTP server for outgoing mail."),
    Setting("smtp", "port", int, 1025, "SMTP port."),
    Setting("smtp", "security", str, "none", "none | starttls | tls. TLS certificates are always verified.", SECURITY_MODES),
    Setting("smtp", "from_address", str, "Building Leadership for Inclusion <blfi@example.org>", "From header of acknowledgements and the envelope sender."),
    Setting("smtp", "username", str, "", "SMTP AUTH user; empty for no AUTH."),
    Setting("smtp", "password", str, "", "SMTP AUTH password (prefer password_env)."),
    Setting("smtp", "password_env", str, "", "Name of an environment variable holding the SMTP password."),
    Setting("smtp", "ca_file", str, "", "Extra CA bundle to verify the SMTP server's certificate."),
    Setting("smtp", "timeout", int, 30, "Seconds before an SMTP operation is abandoned (and retried later)."),
    Setting("smtp", "auth", str, "password", "password (AUTH with username/password when a username is set) | oauth2 (XOAUTH2).", ("password", "oauth2")),
    Setting("smtp", "oauth_mailbox", str, "", "With auth = oauth2: the [[mailboxes]] entry whose OAuth 2.0 app registration and account SMTP uses."),
    Setting("smtp", "message_id_domain", str, "", "Domain of our own Message-IDs; defaults to the from_address domain."),
    Setting("groups", "file", str, "groups.toml", "The groups file, relative to intake.toml."),
    Setting("ack", "enabled", bool, True, "Send acknowledgements at all."),
    Setting("ack", "window_hours", int, 24, "At most one acknowledgement per recipient per group in this window."),
    Setting("ack", "max_per_hour", int, 200, "Global cap; beyond it replies are held and an error is logged."),
    Setting("ack", "max_age_hours", int, 72, "Mail older than this when a mailbox is first connected is stored but not acknowledged."),
    Setting("ack", "contact_address", str, "", "Coordinators' contact address shown in replies; defaults to smtp.from_address."),
    Setting("ack", "max_attempts", int, 8, "Delivery attempts before a temporarily failing message is marked failed."),
    Setting("ack", "retry_base_seconds", int, 30, "First retry delay; doubles each attempt."),
    Setting("ack", "retry_max_seconds", int, 3600, "Cap on the retry delay."),
    Setting("web", "host", str, "127.0.0.1", "Address the web app listens on."),
    Setting("web", "port", int, 8080, "Port of the web app."),
    Setting("web", "secret_key", str, "", "Key signing session cookies (prefer secret_key_env); a random one per start when empty."),
    Setting("web", "secret_key_env", str, "", "Name of an environment variable holding the secret key."),
    Setting("web", "secure_cookies", bool, False, "Mark cookies Secure (set when served behind TLS)."),
    Setting("web", "base_url", str, "http://127.0.0.1:8080", "Public address of the web app, used in digest links."),
    Setting("digest", "enabled", bool, False, "Email each group's coordinators a daily count of new applications and follow-ups (no personal details)."),
    Setting("digest", "time", str, "08:00", "Europe/London time of day (HH:MM) the daily digest is sent."),
    Setting("retention", "raw_days", int, 90, "Raw messages and attachments are purged after this many days."),
    Setting("retention", "closed_days", int, 365, "Closed applications are anonymised after this many days."),
    Setting("retention", "quarantine_days", int, 30, "Quarantined messages are purged after this many days."),
    Setting("retention", "erase_on_withdrawal", bool, False, "Erase an applicant's data after confirming a withdrawal."),
    Setting("privacy", "notice_file", str, "privacy_notice.txt", "Privacy notice shown in replies and on the login page, relative to intake.toml."),
    Setting("privacy", "key_env", str, "INTAKE_ENCRYPTION_KEY", "Environment variable holding the Fernet key for raw messages at rest."),
    Setting("privacy", "key_file", str, "", "File holding the Fernet key (used when key_env is unset)."),
    Setting("logging", "level", str, "INFO", "DEBUG | INFO | WARNING | ERROR.", ("DEBUG", "INFO", "WARNING", "ERROR")),
    Setting("logging", "format", str, "text", "text | json (one JSON object per line; never message bodies).", ("text", "json")),
    Setting("demo", "enabled", bool, False, "Start the built-in demo IMAP server and SMTP sink, seeded with sample mail."),
    Setting("demo", "seed", bool, True, "Seed the demo mailboxes with sample emails at start."),
    Setting("demo", "smtp_sink_dir", str, "var/demo-outbox", "Where the demo SMTP sink writes what it receives."),
)

MAILBOX_SETTINGS: tuple[Setting, ...] = (
    Setting(MAILBOX_SECTION, "name", str, None, "Short unique name of the mailbox (used in logs and the CLI)."),
    Setting(MAILBOX_SECTION, "host", str, None, "IMAP server."),
    Setting(MAILBOX_SECTION, "port", int, 993, "IMAP port."),
    Setting(MAILBOX_SECTION, "security", str, "tls", "none | starttls | tls (certificate verified; never a silent downgrade).", SECURITY_MODES),
    Setting(MAILBOX_SECTION, "ca_file", str, "", "Extra CA bundle to verify the IMAP server's certificate."),
    Setting(MAILBOX_SECTION, "username", str, None, "IMAP login."),
    Setting(MAILBOX_SECTION, "password", str, "", "IMAP password (prefer password_env)."),
    Setting(MAILBOX_SECTION, "password_env", str, "", "Name of an environment variable holding the password."),
    Setting(MAILBOX_SECTION, "folder", str, "INBOX", "Folder to read."),
    Setting(MAILBOX_SECTION, "group", str, "", "Default group for mail arriving here (SWIG | SDIG | SBAMEIG | SLGBTIG)."),
    Setting(MAILBOX_SECTION, "move_to", str, "", "After storing, move processed mail to this folder (created if missing). Empty: leave it."),
    Setting(MAILBOX_SECTION, "ack", bool, True, "Acknowledge interest arriving in this mailbox."),
    Setting(MAILBOX_SECTION, "timeout", int, 60, "Seconds before an IMAP operation is abandoned."),
    Setting(MAILBOX_SECTION, "enabled", bool, True, "Poll this mailbox."),
    Setting(MAILBOX_SECTION, "idle", bool, True, "Keep a connection in IMAP IDLE (when the server advertises it) so new mail is processed at once; the scheduled poll stays as a safety net."),
    Setting(MAILBOX_SECTION, "auth", str, "password", "password | oauth2 (SASL XOAUTH2, e.g. Microsoft 365 / NHSmail).", ("password", "oauth2")),
    Setting(MAILBOX_SECTION, "oauth_flow", str, "client_credentials", "client_credentials (app-only) | delegated (device-code sign-in once with `intake auth login`).", ("client_credentials", "delegated")),
    Setting(MAILBOX_SECTION, "oauth_provider", str, "microsoft", "microsoft (msal) | generic (any OAuth 2.0 token endpoint, see oauth_token_url).", ("microsoft", "generic")),
    Setting(MAILBOX_SECTION, "tenant", str, "", "Microsoft Entra tenant id or domain (microsoft provider)."),
    Setting(MAILBOX_SECTION, "client_id", str, "", "OAuth 2.0 client (application) id."),
    Setting(MAILBOX_SECTION, "client_secret", str, "", "OAuth 2.0 client secret (prefer client_secret_env)."),
    Setting(MAILBOX_SECTION, "client_secret_env", str, "", "Name of an environment variable holding the client secret."),
    Setting(MAILBOX_SECTION, "client_secret_expires", str, "", "Date the client secret expires (YYYY-MM-DD): `intake check` warns 30 days before."),
    Setting(MAILBOX_SECTION, "oauth_scope", str, "https://outlook.office365.com/.default", "Scope requested (space-separated)."),
    Setting(MAILBOX_SECTION, "oauth_token_url", str, "", "Token endpoint (generic provider)."),
    Setting(MAILBOX_SECTION, "oauth_ca_file", str, "", "Extra CA bundle for the token endpoint."),
    Setting(MAILBOX_SECTION, "token_cache", str, "", "Token cache file for the delegated flow (saved after every refresh); default var/tokens/<name>.json."),
)


@dataclass(frozen=True)
class MailboxConfig:
    name: str
    host: str
    port: int
    security: str
    ca_file: str
    username: str
    password: str
    folder: str
    group: str
    move_to: str
    ack: bool
    timeout: int
    enabled: bool
    idle: bool = True
    auth: str = "password"
    oauth_flow: str = "client_credentials"
    oauth_provider: str = "microsoft"
    tenant: str = ""
    client_id: str = ""
    client_secret: str = ""
    client_secret_expires: str = ""
    oauth_scope: str = ""
    oauth_token_url: str = ""
    oauth_ca_file: str = ""
    token_cache: str = ""


@dataclass(frozen=True)
class Settings:
    """Everything configurable, validated. `values` holds 'section.key' -> value."""

    path: Path
    values: Mapping[str, Any]
    mailboxes: tuple[MailboxConfig, ...]
    groups: tuple[Group, ...]
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        """A path from the config, relative to intake.toml's folder."""
        p = Path(relative)
        return p if p.is_absolute() else (self.base_dir / p)

    def group(self, code: str) -> Group:
        for g in self.groups:
            if g.code == code:
                return g
        raise KeyError(code)

    @cached_property  # settings do not change once loaded, and this is read for every message
    def own_addresses(self) -> frozenset[str]:
        """Every address that is us: mailbox logins, group addresses, our From."""
        from intake.addresses import parse_address

        own = {m.username.lower() for m in self.mailboxes if "@" in m.username}
        for g in self.groups:
            own.update(a.lower() for a in g.addresses)
        sender = parse_address(self["smtp.from_address"])
        if sender:
            own.add(sender.email)
        return frozenset(own)

    @property
    def smtp_password(self) -> str:
        return _secret(self.values["smtp.password"], self.values["smtp.password_env"], self.env, self.path, "smtp.password_env")

    @property
    def message_id_domain(self) -> str:
        from intake.addresses import parse_address

        domain = self["smtp.message_id_domain"]
        if domain:
            return domain
        sender = parse_address(self["smtp.from_address"])
        return sender.email.split("@", 1)[1] if sender else "intake.invalid"


def _secret(inline: str, env_name: str, env: Mapping[str, str], path: Path, key: str) -> str:
    if env_name:
        if env_name not in env:
            raise ConfigError(f"environment variable {env_name} is not set", file=str(path), key=key)
        return env[env_name]
    return inline


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("INTAKE_CONFIG", "config/intake.toml"))


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read, merge and validate intake.toml, groups.toml and INTAKE_* variables."""
    env = dict(os.environ if env is None else env)
    path = Path(path) if path else default_config_path(env)
    data = _read_toml(path)
    values = _merge_sections(data, path, env)
    mailboxes = _load_mailboxes(data.get(MAILBOX_SECTION, []), path, env)
    groups_path = (path.parent / values["groups.file"]) if not Path(values["groups.file"]).is_absolute() else Path(values["groups.file"])
    groups = load_groups(groups_path)
    codes = {g.code for g in groups}
    for i, mb in enumerate(mailboxes):
        if mb.group and mb.group not in codes:
            raise ConfigError(f"group {mb.group!r} is not defined in {groups_path}", file=str(path), key=f"mailboxes[{i}].group")
    settings = Settings(path=path, values=values, mailboxes=mailboxes, groups=groups, env=env)
    settings.smtp_password  # validates password_env now, not at first send
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(path)) from None


def _merge_sections(data: dict[str, Any], path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    known_sections = {s.section for s in SETTINGS} | {MAILBOX_SECTION}
    for section, table in data.items():
        if section not in known_sections:
            raise ConfigError(f"unknown section [{section}]", file=str(path), key=section)
        if section == MAILBOX_SECTION:
            continue
        if not isinstance(table, dict):
            raise ConfigError("must be a table", file=str(path), key=section)
        known = {s.key for s in SETTINGS if s.section == section}
        for key in table:
            if key not in known:
                raise ConfigError(f"unknown key (known: {', '.join(sorted(known))})", file=str(path), key=f"{section}.{key}")
    values: dict[str, Any] = {}
    for s in SETTINGS:
        raw = data.get(s.section, {}).get(s.key, s.default)
        source = str(path)
        env_name = f"INTAKE_{s.section}_{s.key}".upper()
        if env_name in env:
            raw, source = env[env_name], f"environment {env_name}"
        values[s.name] = _coerce(s, raw, source)
    return values


def _coerce(s: Setting, raw: Any, source: str, label: str | None = None) -> Any:
    label = label or s.name
    if raw is None:
        raise ConfigError("is required", file=source, key=label)
    try:
        if s.type is bool:
            if isinstance(raw, str):
                if raw.lower() in ("1", "true", "yes", "on"):
                    value: Any = True
                elif raw.lower() in ("0", "false", "no", "off"):
                    value = False
                else:
                    raise ValueError(raw)
            elif isinstance(raw, bool):
                value = raw
            else:
                raise ValueError(raw)
        elif s.type is int:
            if isinstance(raw, bool):
                raise ValueError(raw)
            value = int(raw)
            if value < 0:
                raise ValueError(raw)
        else:
            if not isinstance(raw, str):
                raise ValueError(raw)
            value = raw
    except (TypeError, ValueError):
        kind = {bool: "true or false", int: "a whole number >= 0", str: "a string"}[s.type]
        raise ConfigError(f"must be {kind}, got {raw!r}", file=source, key=label) from None
    if s.choices and value not in s.choices:
        raise ConfigError(f"must be one of {', '.join(s.choices)}, got {value!r}", file=source, key=label)
    return value


def _load_mailboxes(entries: Any, path: Path, env: Mapping[str, str]) -> tuple[MailboxConfig, ...]:
    if not isinstance(entries, list):
        raise ConfigError("must be an array of tables ([[mailboxes]])", file=str(path), key=MAILBOX_SECTION)
    known = {s.key for s in MAILBOX_SETTINGS}
    result: list[MailboxConfig] = []
    names: set[str] = set()
    for i, entry in enumerate(entries):
        label = f"mailboxes[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError("must be a table", file=str(path), key=label)
        for key in entry:
            if key not in known:
                raise ConfigError(f"unknown key (known: {', '.join(sorted(known))})", file=str(path), key=f"{label}.{key}")
        name = entry.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", name or ""):
            raise ConfigError("name is required: letters, digits, - and _", file=str(path), key=f"{label}.name")
        if name in names:
            raise ConfigError(f"duplicate mailbox name {name!r}", file=str(path), key=f"{label}.name")
        names.add(name)
        vals: dict[str, Any] = {}
        for s in MAILBOX_SETTINGS:
            raw = entry.get(s.key, s.default)
            source = str(path)
            env_name = f"INTAKE_MAILBOXES_{name}_{s.key}".upper().replace("-", "_")
            if env_name in env:
                raw, source = env[env_name], f"environment {env_name}"
            vals[s.key] = _coerce(s, raw, source, f"{label}.{s.key}")
        vals["password"] = _secret(vals["password"], vals.pop("password_env"), env, path, f"{label}.password_env")
        vals["client_secret"] = _secret(vals["client_secret"], vals.pop("client_secret_env"), env, path, f"{label}.client_secret_env")
        if vals["auth"] == "oauth2":
            _check_oauth(vals, path, label)
        result.append(MailboxConfig(**vals))
    return tuple(result)


def _check_oauth(vals: dict[str, Any], path: Path, label: str) -> None:
    required = ["client_id"]
    if vals["oauth_provider"] == "microsoft":
        required.append("tenant")
    else:
        required.append("oauth_token_url")
    if vals["oauth_flow"] == "client_credentials":
        required.append("client_secret")
    for key in required:
        if not vals[key]:
            raise ConfigError(f"is required when auth = \"oauth2\"", file=str(path), key=f"{label}.{key}")
    if vals["client_secret_expires"]:
        try:
            dt.date.fromisoformat(vals["client_secret_expires"])
        except ValueError:
            raise ConfigError("must be a date YYYY-MM-DD", file=str(path), key=f"{label}.client_secret_expires") from None


def london_date(value: Any, file: str, key: str) -> dt.datetime:
    """A TOML local datetime (Europe/London) as an aware datetime."""
    from intake.clock import LONDON

    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=LONDON) if value.tzinfo is None else value
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(f"not a date and time: {value!r}", file=file, key=key) from None
        return parsed.replace(tzinfo=LONDON) if parsed.tzinfo is None else parsed
    raise ConfigError(f"must be a date and time like 2027-01-12T10:00:00, got {value!r}", file=file, key=key)


__all__ = [
    "Group",
    "GroupDate",
    "MailboxConfig",
    "Settings",
    "SETTINGS",
    "MAILBOX_SETTINGS",
    "load_settings",
]
