"""The IMAP edge: the only module that imports imapclient.

Connects with TLS, STARTTLS or plain text exactly as configured (never a silent downgrade:
asking for STARTTLS from a server that does not offer it is an error), lists UIDs above a
checkpoint, fetches message bytes in batches with BODY.PEEK[] (so other readers' \\Seen
flags are untouched), moves or deletes processed mail and waits for new mail with IDLE.
imapclient's responses and exceptions stop here: callers get RawMessage values and
intake.errors types.

    wrong credentials                          -> MailboxAuthError
    configured folder does not exist           -> FolderMissing
    connect, timeout, TLS, protocol, dropped   -> MailboxUnavailable (names host:port)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import imaplib
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

from imapclient import IMAPClient
from imapclient import exceptions as imap_errors

from intake.config import MailboxConfig
from intake.domain import RawMessage, SourceRef
from intake.errors import FolderMissing, MailboxAuthError, MailboxError, MailboxUnavailable

T = TypeVar("T")

_NETWORK_ERRORS = (OSError, socket.timeout, ssl.SSLError, imaplib.IMAP4.abort, imap_errors.IMAPClientAbortError)
# Login response codes (RFC 5530) that mean "try again later", not "wrong credentials".
_TEMPORARY_LOGIN_CODES = ("[UNAVAILABLE]", "[INUSE]", "[SERVERBUG]", "[LIMIT]")


@dataclass(frozen=True)
class MailboxHealth:
    """What `intake check` reports for one mailbox."""

    name: str
    ok: bool
    detail: str
    uidvalidity: int | None = None
    message_count: int | None = None


def _tls_context(ca_file: str) -> ssl.SSLContext:
    """Verify the server against ca_file if given, else the system CAs; hostname checked."""
    context = ssl.create_default_context(cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class ImapMailbox:
    """One IMAP mailbox session. Use as a context manager."""

    def __init__(self, config: MailboxConfig, *, readonly: bool = True, base_dir: Path | None = None):
        """`base_dir` (settings.base_dir, intake.toml's folder) anchors a relative OAuth
        token cache path; without it the working directory is used."""
        self.config = config
        self.readonly = readonly
        self.base_dir = base_dir
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
                _shutdown(self._client)
            self._client = None

    def _connect(self) -> IMAPClient:
        cfg = self.config
        try:
            if cfg.security == "tls":
                client = IMAPClient(cfg.host, port=cfg.port, ssl=True, ssl_context=_tls_context(cfg.ca_file), timeout=cfg.timeout)
            else:
                client = IMAPClient(cfg.host, port=cfg.port, ssl=False, timeout=cfg.timeout)
                if cfg.security == "starttls":
                    self._starttls(client)
        except MailboxError:
            raise
        except ssl.SSLCertVerificationError as exc:
            raise MailboxUnavailable(cfg.name, f"TLS certificate of {self.where} not trusted: {exc.verify_message}") from None
        except (*_NETWORK_ERRORS, imap_errors.IMAPClientError) as exc:
            raise MailboxUnavailable(cfg.name, f"cannot connect to {self.where}: {_describe(exc)}") from None
        client.normalise_times = False  # keep INTERNALDATE's own timezone instead of local naive time
        return client

    def _starttls(self, client: IMAPClient) -> None:
        if not client.has_capability("STARTTLS"):
            # Never fall back to plain text: the password would cross the network in clear.
            _shutdown(client)
            raise MailboxUnavailable(self.config.name, f"{self.where} does not offer STARTTLS; refusing to log in without TLS")
        try:
            client.starttls(_tls_context(self.config.ca_file))
        except BaseException:
            _shutdown(client)  # must not hide why the handshake failed
            raise

    def _login(self, client: IMAPClient) -> None:
        cfg = self.config
        try:
            if cfg.auth == "oauth2":
                self._oauth_login(client)
            else:
                client.login(cfg.username, cfg.password)
            self.capabilities = frozenset(c.decode().upper() for c in client.capabilities())
        except imap_errors.LoginError as exc:
            reason = _describe(exc)
            if any(code in reason.upper() for code in _TEMPORARY_LOGIN_CODES):
                # The server is having trouble; our credentials may well be fine.
                raise MailboxUnavailable(cfg.name, f"{self.where} cannot log in {cfg.username} now: {reason}") from None
            raise MailboxAuthError(cfg.name, f"{self.where} refused the login for {cfg.username}: {reason}") from None
        except _NETWORK_ERRORS as exc:
            raise MailboxUnavailable(cfg.name, f"connection to {self.where} lost during login: {_describe(exc)}") from None
        except imap_errors.IMAPClientError as exc:
            raise MailboxUnavailable(cfg.name, f"login to {self.where} failed: {_describe(exc)}") from None

    def _oauth_login(self, client: IMAPClient) -> None:
        from intake.oauth import TokenProvider

        provider = TokenProvider.for_mailbox(self.config, base_dir=self.base_dir)
        try:
            client.oauth2_login(self.config.username, provider.token())
        except imap_errors.LoginError:
            # The token may have been revoked or expired early: one fresh token, one retry.
            client.oauth2_login(self.config.username, provider.token(force_refresh=True))

    def _select(self, client: IMAPClient) -> None:
        cfg = self.config
        try:
            info = client.select_folder(cfg.folder, readonly=self.readonly)
        except _NETWORK_ERRORS as exc:
            raise MailboxUnavailable(cfg.name, f"connection to {self.where} lost: {_describe(exc)}") from None
        except imap_errors.IMAPClientError as exc:
            if not _folder_exists(client, cfg.folder):
                raise FolderMissing(cfg.name, f"folder {cfg.folder!r} does not exist on {self.where}") from None
            raise MailboxUnavailable(cfg.name, f"cannot open folder {cfg.folder!r} on {self.where}: {_describe(exc)}") from None
        self.uidvalidity = int(info[b"UIDVALIDITY"])
        self.exists = int(info.get(b"EXISTS", 0))

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one IMAP command, mapping failures to our error types."""
        if self._client is None:
            raise MailboxUnavailable(self.config.name, f"{what}: not connected to {self.where}")
        try:
            return fn(*args, **kwargs)
        except _NETWORK_ERRORS as exc:
            raise MailboxUnavailable(self.config.name, f"connection to {self.where} lost during {what}: {_describe(exc)}") from None
        except imap_errors.IMAPClientError as exc:
            raise MailboxUnavailable(self.config.name, f"{what} failed on {self.where}: {_describe(exc)}") from None
        except ValueError as exc:
            # imapclient's response parser raises ValueError on a reply cut short mid-line.
            raise MailboxUnavailable(self.config.name, f"garbled reply from {self.where} to {what}: {exc}") from None

    @property
    def _imap(self) -> IMAPClient:
        if self._client is None:
            raise MailboxUnavailable(self.config.name, f"not connected to {self.where}")
        return self._client

    # -- reading ------------------------------------------------------------------------
    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs greater than last_uid, ascending. ("N:*" also matches the highest UID when
        it is below N, so the result is filtered.)"""
        uids = self._call("UID SEARCH", self._imap.search, ["UID", f"{last_uid + 1}:*"])
        return sorted(u for u in uids if u > last_uid)

    def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        """RFC822.SIZE of each UID (a few bytes each; vanished UIDs are left out), so callers
        can bound how many bytes one batch holds before fetching any body."""
        ordered = sorted(set(uids))
        found: dict[int, int] = {}
        for start in range(0, len(ordered), 1000):
            chunk = ordered[start:start + 1000]
            response = self._call("UID FETCH", self._imap.fetch, chunk, ["RFC822.SIZE"])
            for uid, item in response.items():
                size = item.get(b"RFC822.SIZE")
                if isinstance(size, int):
                    found[uid] = size
        return found

    def fetch(self, uids: Sequence[int], *, batch_size: int = 200) -> Iterator[RawMessage]:
        """Message bytes in UID order, batch_size UIDs per UID FETCH; vanished UIDs are skipped.

        BODY.PEEK[] leaves \\Seen alone. UIDs go as a list, never a range string (IMAPClient
        4 rejects "a:b" here)."""
        ordered = sorted(set(uids))
        for start in range(0, len(ordered), batch_size):
            chunk = ordered[start:start + batch_size]
            with _literals_unlogged(self._imap):
                response = self._call("UID FETCH", self._imap.fetch, chunk, ["BODY.PEEK[]", "INTERNALDATE"])
            for uid in chunk:
                item = response.pop(uid, None)  # popped: the caller's copy is the only one left
                body = item.get(b"BODY[]") if item else None
                if body is None:  # expunged since the search
                    continue
                yield RawMessage(SourceRef(self.config.name, self.uidvalidity, uid), bytes(body),
                                 _aware(item.get(b"INTERNALDATE")))

    # -- changing -----------------------------------------------------------------------
    def move(self, uids: Sequence[int], folder: str) -> None:
        """Move messages to folder (created if missing): MOVE (RFC 6851) or COPY + expunge."""
        if not uids:
            return
        self._require_writable("move messages")
        self._ensure_folder(folder)
        if "MOVE" in self.capabilities:
            self._call("UID MOVE", self._imap.move, list(uids), folder)
        else:
            self._call("UID COPY", self._imap.copy, list(uids), folder)
            self.delete(uids)

    def delete(self, uids: Sequence[int]) -> None:
        """Flag messages \\Deleted and expunge them (only these UIDs when UIDPLUS allows)."""
        if not uids:
            return
        self._require_writable("delete messages")
        self._call("STORE", self._imap.delete_messages, list(uids))
        if "UIDPLUS" in self.capabilities:
            self._call("UID EXPUNGE", self._imap.uid_expunge, list(uids))
        else:
            self._call("EXPUNGE", self._imap.expunge)

    def _ensure_folder(self, folder: str) -> None:
        if self._call("LIST", self._imap.folder_exists, folder):
            return
        try:
            self._call("CREATE", self._imap.create_folder, folder)
        except MailboxUnavailable:
            # Another client may have created it a moment ago; only then is that fine.
            if not self._call("LIST", self._imap.folder_exists, folder):
                raise

    def _require_writable(self, what: str) -> None:
        if self.readonly:
            # A caller bug, not a server condition: say so loudly.
            raise ValueError(f"mailbox {self.config.name} was opened read-only; open it with readonly=False to {what}")

    # -- waiting ------------------------------------------------------------------------
    def idle_wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the server to report new mail (IDLE, RFC 2177);
        True if new mail may have arrived. Always leaves IDLE before returning. A server
        without IDLE is asked with NOOP after the wait."""
        if "IDLE" not in self.capabilities:
            time.sleep(timeout)
            _, responses = self._call("NOOP", self._imap.noop)
            return _new_mail(responses)
        self._call("IDLE", self._imap.idle)
        deadline = time.monotonic() + timeout
        seen: list[Any] = []
        while True:
            # idle_check returns early on any untagged response ("* OK Still here", flag
            # changes), and at once with nothing on EOF: wait on only while it was chatter.
            responses = self._call("IDLE", self._imap.idle_check, timeout=max(0.0, deadline - time.monotonic()))
            seen += responses
            if not responses or _new_mail(responses) or time.monotonic() >= deadline:
                break
        _, leftover = self._call("DONE", self._imap.idle_done)
        return _new_mail(seen) or _new_mail(leftover)


@contextlib.contextmanager
def _literals_unlogged(client: IMAPClient) -> Iterator[None]:
    """IMAPClient sets imaplib's debug level to 5, at which imaplib formats the repr() of
    every literal it reads (each message's bytes) for a debug line that is then dropped:
    CPU per message, and three times a 10 MB message's size in memory at once. Unless
    that logger really is at DEBUG, the level is lowered for the command."""
    imap = getattr(client, "_imap", None)
    if imap is None or logging.getLogger("imapclient.imaplib").isEnabledFor(logging.DEBUG):
        yield
        return
    level, imap.debug = imap.debug, 0
    try:
        yield
    finally:
        imap.debug = level


def check_mailbox(config: MailboxConfig, *, base_dir: Path | None = None) -> MailboxHealth:
    """Connect, log in and open the folder: for `intake check`. Never raises MailboxError."""
    try:
        with ImapMailbox(config, base_dir=base_dir) as box:
            return MailboxHealth(config.name, True, f"connected to {box.where}, folder {config.folder!r} has {box.exists} messages",
                                 box.uidvalidity, box.exists)
    except MailboxError as exc:
        return MailboxHealth(config.name, False, exc.reason)


def _new_mail(responses: Sequence[Any]) -> bool:
    """Does any untagged response announce a new message count ("* 5 EXISTS")? (Expunges
    come as EXPUNGE, so EXISTS means arrivals; RECENT is obsolete in IMAP4rev2.)"""
    return any(isinstance(r, tuple) and len(r) >= 2 and r[1] == b"EXISTS" for r in responses)


def _shutdown(client: IMAPClient) -> None:
    """Close the socket without a word to the server; best effort (it may be half-gone)."""
    try:
        client.shutdown()
    except Exception:
        pass


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
    return text.strip().removeprefix("b'").removesuffix("'").removeprefix('b"').removesuffix('"')
