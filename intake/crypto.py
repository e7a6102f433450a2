"""Encryption at rest of raw messages, attachments and quarantined mail (Fernet).

The key comes from the environment variable named by ``privacy.key_env`` or, when that is
unset, from the file named by ``privacy.key_file``. Either may hold several keys separated
by commas: the first seals, all of them open (a ``MultiFernet``), so rows written with the
old key during a rotation still open. No key at all means blobs are stored as they are and
``RawCipher.enabled`` is False (``intake check`` and the README say so).

Errors (both IntakeError):
  KeyMissing     a blob is encrypted but no key is configured
  DecryptError   no configured key opens the blob (wrong key, or corrupted data)
A malformed key is a ConfigError naming the variable or file.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from intake.config import Settings
from intake.errors import ConfigError, IntakeError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class KeyMissing(IntakeError):
    """An encrypted blob must be opened but no encryption key is configured."""


class DecryptError(IntakeError):
    """None of the configured keys opens this blob."""


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def parse_keys(text: str, *, source: str, key: str) -> list[Fernet]:
    """Comma-separated Fernet keys; ConfigError naming `source` when one is malformed."""
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise ConfigError(f"{source} holds no key", key=key)
    try:
        return [Fernet(k.encode("ascii")) for k in keys]
    except (ValueError, UnicodeEncodeError):
        # Never echo the key itself into a log or terminal.
        raise ConfigError(f"{source} does not hold a valid Fernet key (generate one with `intake key generate`)",
                          key=key) from None


class RawCipher:
    """Seals and opens stored mail bytes; a no-op cipher when no key is configured."""

    def __init__(self, keys: Sequence[Fernet] = ()):
        self._keys = list(keys)
        self._fernet: MultiFernet | None = MultiFernet(self._keys) if self._keys else None
        self.enabled: bool = self._fernet is not None

    @classmethod
    def from_settings(cls, settings: Settings) -> "RawCipher":
        env_name = settings["privacy.key_env"]
        if env_name and settings.env.get(env_name, "").strip():
            return cls(parse_keys(settings.env[env_name], source=f"environment variable {env_name}",
                                  key="privacy.key_env"))
        if settings["privacy.key_file"]:
            path = settings.resolve(settings["privacy.key_file"])
            try:
                text = path.read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read key file {path}: {exc}", file=str(settings.path),
                                  key="privacy.key_file") from None
            return cls(parse_keys(text, source=f"key file {path}", key="privacy.key_file"))
        return cls()

    @classmethod
    def from_text(cls, text: str, *, source: str = "key") -> "RawCipher":
        return cls(parse_keys(text, source=source, key=source))

    def seal(self, data: bytes) -> tuple[bytes, bool]:
        """(stored bytes, encrypted flag)."""
        if self._fernet is None:
            return data, False
        return self._fernet.encrypt(data), True

    def open(self, data: bytes, encrypted: bool) -> bytes:
        if not encrypted:
            return bytes(data)
        if self._fernet is None:
            raise KeyMissing("this data is encrypted but no encryption key is configured "
                             "(privacy.key_env / privacy.key_file)")
        try:
            return self._fernet.decrypt(bytes(data))
        except InvalidToken:
            raise DecryptError("the configured encryption key does not open this data "
                               "(wrong key, or the data is damaged)") from None

    def reseal(self, data: bytes, encrypted: bool) -> bytes:
        """Re-encrypt under this cipher's first key: tokens are rotated, plaintext is sealed."""
        if self._fernet is None:
            raise KeyMissing("no key to re-encrypt with")
        if not encrypted:
            return self._fernet.encrypt(bytes(data))
        try:
            return self._fernet.rotate(bytes(data))
        except InvalidToken:
            raise DecryptError("neither the old nor the new key opens this data") from None

    def with_fallback(self, other: "RawCipher") -> "RawCipher":
        """This cipher's keys first (they seal), then `other`'s (they still open)."""
        return RawCipher(self._keys + other._keys)


def message_id_hash(message_id: str) -> str:
    """SHA-256 of the normalised Message-ID (the pipeline's dedupe key form), '' when none."""
    mid = message_id.strip().strip("<>").strip().lower()
    if not mid or mid.startswith("hash:"):
        return ""
    return hashlib.sha256(mid.encode("utf-8", "replace")).hexdigest()


def tombstone_hashes(content_hash: str, message_id: str) -> tuple[str, str]:
    """What erasure stores for one message: no content, only hashes the pipeline checks."""
    return content_hash, message_id_hash(message_id)


def rotate_blobs(session: "Session", cipher: RawCipher) -> dict[str, int]:
    """Re-seal every stored blob under `cipher`'s first key, in the caller's transaction.

    `cipher` must also hold the old key(s) (see RawCipher.with_fallback). Plaintext blobs,
    stored while no key was configured, are encrypted. Returns counts per table."""
    from sqlalchemy import select

    from intake.models import AttachmentRow, Quarantine, RawMessageRow

    counts: dict[str, int] = {}
    for name, model in (("raw_messages", RawMessageRow), ("attachments", AttachmentRow), ("quarantine", Quarantine)):
        pk = next(iter(model.__table__.primary_key.columns))
        ids = list(session.execute(select(pk).where(model.data.is_not(None))).scalars())
        for start in range(0, len(ids), 200):  # bounded memory on a large store
            batch = list(session.execute(select(model).where(pk.in_(ids[start:start + 200]))).scalars())
            for row in batch:
                row.data, row.encrypted = cipher.reseal(row.data, row.encrypted), True
            session.flush()
            for row in batch:
                session.expunge(row)
        counts[name] = len(ids)
    return counts
