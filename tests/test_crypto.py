"""Encryption at rest: keys from env or file, sealed blobs unreadable without the key,
rotation re-encrypts every blob (old key useless afterwards), tombstone hashes."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from sqlalchemy import select

from intake.cli import main
from intake.config import load_settings
from intake.crypto import DecryptError, KeyMissing, RawCipher, generate_key, tombstone_hashes
from intake.db import make_engine, make_sessionmaker, upgrade
from intake.errors import ConfigError
from intake.models import AttachmentRow, Message, Quarantine, RawMessageRow
from tests.support.config import write_config

SECRET = b"From: Priya Raman <priya.raman@example.nhs.uk>\r\nSubject: interest\r\n\r\nPlease add me.\r\n"
T0 = dt.datetime(2025, 1, 6, 9, 0, tzinfo=dt.timezone.utc)


def _settings(tmp_path: Path, env: dict[str, str] | None = None, **privacy):
    config = write_config(tmp_path, mailboxes=[], database_url=f"sqlite:///{tmp_path / 'intake.db'}",
                          sections={"privacy": privacy} if privacy else None)
    return load_settings(config, env=env or {})


def test_no_key_stores_plaintext_and_says_so(tmp_path) -> None:
    cipher = RawCipher.from_settings(_settings(tmp_path))
    assert cipher.enabled is False
    assert cipher.seal(SECRET) == (SECRET, False)
    assert cipher.open(SECRET, False) == SECRET


def test_key_from_environment_seals_unreadably(tmp_path) -> None:
    key = generate_key()
    cipher = RawCipher.from_settings(_settings(tmp_path, env={"INTAKE_ENCRYPTION_KEY": key}))
    sealed, encrypted = cipher.seal(SECRET)
    assert cipher.enabled and encrypted
    assert b"priya" not in sealed.lower() and SECRET not in sealed
    assert cipher.open(sealed, True) == SECRET


def test_key_from_file_relative_to_config(tmp_path) -> None:
    key = generate_key()
    (tmp_path / "secret.key").write_text(key + "\n")
    settings = _settings(tmp_path, key_file="secret.key")
    sealed, _ = RawCipher.from_settings(settings).seal(SECRET)
    assert RawCipher.from_text(key).open(sealed, True) == SECRET


def test_environment_wins_over_file(tmp_path) -> None:
    env_key, file_key = generate_key(), generate_key()
    (tmp_path / "secret.key").write_text(file_key)
    settings = _settings(tmp_path, env={"MY_KEY": env_key}, key_env="MY_KEY", key_file="secret.key")
    sealed, _ = RawCipher.from_settings(settings).seal(SECRET)
    assert RawCipher.from_text(env_key).open(sealed, True) == SECRET
    with pytest.raises(DecryptError):
        RawCipher.from_text(file_key).open(sealed, True)


def test_malformed_key_names_the_variable_and_the_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="INTAKE_ENCRYPTION_KEY") as err:
        RawCipher.from_settings(_settings(tmp_path, env={"INTAKE_ENCRYPTION_KEY": "not-a-key"}))
    assert "not-a-key" not in str(err.value)  # never echo a secret
    (tmp_path / "bad.key").write_text("short")
    with pytest.raises(ConfigError, match="bad.key"):
        RawCipher.from_settings(_settings(tmp_path / "b", key_file=str(tmp_path / "bad.key")))
    with pytest.raises(ConfigError, match="missing.key"):
        RawCipher.from_settings(_settings(tmp_path / "c", key_file="missing.key"))


def test_opening_without_the_key_or_with_another_key_fails_explicitly(tmp_path) -> None:
    sealed, _ = RawCipher.from_text(generate_key()).seal(SECRET)
    with pytest.raises(KeyMissing):
        RawCipher().open(sealed, True)
    with pytest.raises(DecryptError):
        RawCipher.from_text(generate_key()).open(sealed, True)


def test_several_keys_first_seals_all_open() -> None:
    new, old = generate_key(), generate_key()
    old_token, _ = RawCipher.from_text(old).seal(SECRET)
    both = RawCipher.from_text(f"{new},{old}")
    assert both.open(old_token, True) == SECRET
    new_token, _ = both.seal(SECRET)
    assert RawCipher.from_text(new).open(new_token, True) == SECRET


def test_tombstone_hashes_match_the_pipeline_dedupe_key() -> None:
    chash = hashlib.sha256(SECRET).hexdigest()
    expected = hashlib.sha256(b"abc@example.nhs.uk").hexdigest()
    assert tombstone_hashes(chash, "<ABC@Example.NHS.uk> ") == (chash, expected)
    assert tombstone_hashes(chash, "") == (chash, "")
    assert tombstone_hashes(chash, f"hash:{chash}") == (chash, "")


# -- at rest, in a real database, through the CLI -------------------------------------------
def _store_blobs(url: str, cipher: RawCipher) -> None:
    upgrade(url)
    sessions = make_sessionmaker(make_engine(url))
    with sessions.begin() as session:
        data, enc = cipher.seal(SECRET)
        m = Message(message_id="<m1@x>", message_id_key="m1@x", content_hash="a" * 64, mailbox="swig", kind="interest",
                    received_at=T0, fetched_at=T0)
        m.raw = RawMessageRow(data=data, encrypted=enc, stored_at=T0)
        att, aenc = cipher.seal(b"CV of Priya Raman")
        m.attachments.append(AttachmentRow(filename="cv.txt", content_type="text/plain", size=17, data=att, encrypted=aenc))
        session.add(m)
        q, qenc = cipher.seal(SECRET + b"broken")
        session.add(Quarantine(mailbox="swig", uidvalidity=1, uid=9, content_hash="b" * 64, data=q, encrypted=qenc,
                               reason="unparseable", created_at=T0))


def _blobs(url: str) -> list[tuple[bytes, bool]]:
    with make_sessionmaker(make_engine(url))() as session:
        rows: list = list(session.execute(select(RawMessageRow)).scalars())
        rows += list(session.execute(select(AttachmentRow)).scalars())
        rows += list(session.execute(select(Quarantine)).scalars())
        return [(bytes(r.data), r.encrypted) for r in rows]


def test_database_file_holds_no_plaintext_when_a_key_is_set(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'intake.db'}"
    _store_blobs(url, RawCipher.from_text(generate_key()))
    make_engine(url).dispose()
    blob = (tmp_path / "intake.db").read_bytes() + _read(tmp_path / "intake.db-wal")
    assert b"Priya" not in blob and b"priya.raman" not in blob
    assert all(encrypted for _, encrypted in _blobs(url))


def test_key_rotate_reencrypts_every_blob_including_plaintext(tmp_path) -> None:
    old, new = generate_key(), generate_key()
    config = write_config(tmp_path, mailboxes=[], database_url=f"sqlite:///{tmp_path / 'intake.db'}")
    url = f"sqlite:///{tmp_path / 'intake.db'}"
    _store_blobs(url, RawCipher.from_text(old))
    with make_sessionmaker(make_engine(url)).begin() as session:  # one blob from before encryption was on
        session.add(Quarantine(mailbox="swig", uid=10, content_hash="c" * 64, data=b"plain Priya", encrypted=False,
                               reason="x", created_at=T0))
    result = CliRunner().invoke(main, ["--config", str(config), "key", "rotate", "--new-key-env", "NEWKEY"],
                                env={"INTAKE_ENCRYPTION_KEY": old, "NEWKEY": new}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "raw_messages 1, attachments 1, quarantine 2" in result.output
    blobs = _blobs(url)
    assert len(blobs) == 4 and all(enc for _, enc in blobs)
    opened = sorted(RawCipher.from_text(new).open(data, True) for data, _ in blobs)
    assert opened == sorted([SECRET, b"CV of Priya Raman", SECRET + b"broken", b"plain Priya"])
    for data, _ in blobs:
        with pytest.raises(DecryptError):
            RawCipher.from_text(old).open(data, True)
    disk = (tmp_path / "intake.db").read_bytes() + _read(tmp_path / "intake.db-wal")
    assert b"plain Priya" not in disk  # the plaintext row is gone from free pages too


def test_key_rotate_needs_exactly_one_source(tmp_path) -> None:
    config = write_config(tmp_path, mailboxes=[], database_url=f"sqlite:///{tmp_path / 'intake.db'}")
    result = CliRunner().invoke(main, ["--config", str(config), "key", "rotate"])
    assert result.exit_code != 0 and "exactly one" in result.output


def test_key_generate_writes_a_private_file(tmp_path) -> None:
    out = tmp_path / "k"
    result = CliRunner().invoke(main, ["key", "generate", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0
    assert out.stat().st_mode & 0o777 == 0o600
    Fernet(out.read_text().strip().encode())  # a valid key


def _read(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""
