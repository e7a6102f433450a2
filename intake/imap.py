"""The IMAP edge: the only module that imports imapclient.

Connects with TLS, STARTTLS or plain text exactly as configured (never a silent downgrade:
asking for STARTTLS from a server that does not offer it is an error), lists UIDs above a
checkpoint, fetches message bytes in batches with BODY.PEEK[] (so other readers' \\Seen
flags are untouched), and moves processed mail. imapclient's responses and exceptions stop
here: callers get RawMessage values and intake.errors types.
"""

from __future__ import annotations

import datetime as dt
import imaplib
import socket
import ssl
from dataclasses import dataclass
from typing import Iterator, Sequence

from imapclient import IMAPClient
from imapclient import exceptions as imap_errors

from intake.config import MailboxConfig
from intake.domain import RawMessage, SourceRef
from intake.errors import FolderMissing, MailboxAuthError, MailboxError, MailboxUnavailable

_NETWORK_ERRORS = (OSError, socket.timeout, ssl.SSLError, imaplib.IMAP4.abort, imap_errors.IMAPClientAbortError)


@dataclass(frozen=True)
class MailboxHealth:
    name: str
    ok: bool
    detail: str
    uidvalidity: int | None = None
    message_count: int | None = None


def _tls_context(ca_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class ImapMailbox:
    """One IMAP mailbox session. Use as a context manager."""

    def __init__(self, config: MailboxConfig, *, readonly: bool = True):
        self.config = config
        self.readonly = readonly
        self.uidvalidity = 0
        self.exists = 0
        self.capabilities: frozenset[str] = frozenset()
        self._client: IMAPClient | None = None

    @property
    def where(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    # -- session ------------------------------------------------------------------------
    def __enter__(self) -> "ImapMailbox":
        try:
            self._client = self._connect()
            self._login(self._client)
            self._select(self._client)
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def _close(self) -> None:
        if self._client is not None:
            try:
                self._client.logout()
            except Exception:  # logging out of a broken connection is best effort
                try:
                    self._client.shutdown()
                except Exception:
                    pass
            self._client = None

    def _connect(self) -> IMAPClient:
        cfg = self.config
        try:
            if cfg.security == "tls":
                client = IMAPClient(cfg.host, port=cfg.port, ssl=True, ssl_context=_tls_context(cfg.ca_file), timeout=cfg.timeout)
            else:
                client = IMAPClient(cfg.host, port=cfg.port, ssl=False, timeout=cfg.timeout)
                if cfg.security == "starttls":
                    if not client.has_capability("STARTTLS"):
                        client.shutdown()
                        raise MailboxUnavailable(cfg.name, f"{self.where} does not offer STARTTLS; refusing to log in without TLS")
                    client.starttls(_tls_context(cfg.ca_file))
        except MailboxError:
            raise
        except ssl.SSLCertVerificationError as exc:
            raise MailboxUnavailable(cfg.name, f"TLS certificate of {self.where} not trusted: {exc.verify_message}") from None
        except (*_NETWORK_ERRORS, imap_errors.IMAPClientError) as exc:
            raise MailboxUnavailable(cfg.name, f"cannot connect to {self.where}: {_describe(exc)}") from None
        client.normalise_times = False  # keep INTERNALDATE's own timezone instead of local naive time
        return client

    def _login(self, client: IMAPClient) -> None:
        cfg = self.config
        try:
            if cfg.auth == "oauth2":
                self._oauth_login(client)
            else:
                client.login(cfg.username, cfg.password)
            self.capabilities = frozenset(c.decode().upper() for c in client.capabilities())
        except imap_errors.LoginError as exc:
            raise MailboxAuthError(cfg.name, f"{self.where} refused the login for {cfg.username}: {_describe(exc)}") from None
        except _NETWORK_ERRORS as exc:
            raise MailboxUnavailable(cfg.name, f"connection to {self.where} lost during login: {_describe(exc)}") from None

    def _oauth_login(self, client: IMAPClient) -> None:
        from intake.oauth import TokenProvider

        provider = TokenProvider.for_mailbox(self.config)
        try:
            client.oauth2_login(self.config.username, provider.token())
        except imap_errors.LoginError:
            # The token may have been revoked or expired early: one fresh token, one retry.
            client.oauth2_login(self.config.username, provider.token(force_refresh=True))

    def _select(self, client: IMAPClient) -> None:
        cfg = self.config
        try:
            info = client.select_folder(cfg.folder, readonly=self.readonly)
        except imap_errors.IMAPClientError as exc:
            if not _folder_exists(client, cfg.folder):
                raise FolderMissing(cfg.name, f"folder {cfg.folder!r} does not exist on {self.where}") from None
            raise MailboxUnavailable(cfg.name, f"cannot open folder {cfg.folder!r}: {_describe(exc)}") from None
        except _NETWORK_ERRORS as exc:
            raise MailboxUnavailable(cfg.name, f"connection to {self.where} lost: {_describe(exc)}") from None
        self.uidvalidity = int(info[b"UIDVALIDITY"])
        self.exists = int(info.get(b"EXISTS", 0))

    def _call(self, what: str, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        """Run one IMAP command, mapping failures to our error types."""
        if self._client is None:
            raise MailboxUnavailable(self.config.name, "not connected")
        try:
            return fn(*args, **kwargs)
        except _NETWORK_ERRORS as exc:
            raise MailboxUnavailable(self.config.name, f"connection to {self.where} lost during {what}: {_describe(exc)}") from None
        except imap_errors.IMAPClientError as exc:
            raise MailboxUnavailable(self.config.name, f"{what} failed on {self.where}: {_describe(exc)}") from None

    # -- reading ------------------------------------------------------------------------
    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs greater than last_uid, ascending. ("N:*" also matches the highest UID when
        it is below N, so the result is filtered.)"""
        uids = self._call("UID SEARCH", self._client.search, ["UID", f"{last_uid + 1}:*"])  # type: ignore[union-attr]
        return sorted(u for u in uids if u > last_uid)

    def fetch(self, uids: Sequence[int], *, batch_size: int = 200) -> Iterator[RawMessage]:
        """Message bytes in UID order, batch_size UIDs per UID FETCH; vanished UIDs are skipped."""
        ordered = sorted(uids)
        for start in range(0, len(ordered), batch_size):
            chunk = ordered[start:start + batch_size]
            response = self._call("UID FETCH", self._client.fetch, chunk, ["BODY.PEEK[]", "INTERNALDATE"])  # type: ignore[union-attr]
            for uid in chunk:
                item = response.get(uid)
                if not item or b"BODY[]" not in item:
                    continue
                yield RawMessage(SourceRef(self.config.name, self.uidvalidity, uid), bytes(item[b"BODY[]"]),
                                 _aware(item.get(b"INTERNALDATE")))

    # -- changing -----------------------------------------------------------------------
    def move(self, uids: Sequence[int], folder: str) -> None:
        """Move messages to folder (created if missing): MOVE (RFC 6851) or COPY + expunge."""
        if not uids:
            return
        client = self._client
        if not self._call("LIST", client.folder_exists, folder):  # type: ignore[union-attr]
            self._call("CREATE", client.create_folder, folder)  # type: ignore[union-attr]
        if "MOVE" in self.capabilities:
            self._call("UID MOVE", client.move, list(uids), folder)  # type: ignore[union-attr]
        else:
            self._call("UID COPY", client.copy, list(uids), folder)  # type: ignore[union-attr]
            self.delete(uids)

    def delete(self, uids: Sequence[int]) -> None:
        if not uids:
            return
        client = self._client
        self._call("STORE", client.delete_messages, list(uids))  # type: ignore[union-attr]
        if "UIDPLUS" in self.capabilities:
            self._call("UID EXPUNGE", client.uid_expunge, list(uids))  # type: ignore[union-attr]
        else:
            self._call("EXPUNGE", client.expunge)  # type: ignore[union-attr]

    def idle_wait(self, timeout: float) -> bool:
        """IDLE until the server reports new mail or `timeout` seconds pass; leaves IDLE cleanly."""
        client = self._client
        self._call("IDLE", client.idle)  # type: ignore[union-attr]
        try:
            responses = self._call("IDLE", client.idle_check, timeout=timeout)  # type: ignore[union-attr]
        finally:
            self._call("DONE", client.idle_done)  # type: ignore[union-attr]
        return any(len(r) >= 2 and r[1] in (b"EXISTS", b"RECENT") for r in responses)


def check_mailbox(config: MailboxConfig) -> MailboxHealth:
    """Connect, log in and open the folder: for `intake check`."""
    try:
        with ImapMailbox(config) as box:
            return MailboxHealth(config.name, True, f"connected to {box.where}, folder {config.folder!r} has {box.exists} messages",
                                 box.uidvalidity, box.exists)
    except MailboxError as exc:
        return MailboxHealth(config.name, False, exc.reason)


def _folder_exists(client: IMAPClient, folder: str) -> bool:
    try:
        return bool(client.folder_exists(folder))
    except Exception:  # if we cannot even list folders, report the select error instead
        return True


def _aware(value: object) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return value.astimezone(dt.timezone.utc) if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return text.strip().removeprefix("b'").removesuffix("'")
