"""The SMTP edge: the only module that imports smtplib.

One SmtpSender holds one connection for a delivery run (reconnecting if the server drops
it). TLS is verified and never silently skipped: `starttls` against a server that does not
offer it is an error. Replies become TemporaryDeliveryError (4xx, connection trouble: retry)
or PermanentDeliveryError (5xx: give up and record why). With `smtp.auth = "oauth2"` a
token that cannot be had (endpoint down, secret wrong: MailboxError) is a temporary
failure too, so the outbox row waits and is retried rather than lost to a crash.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl

from intake.config import MailboxConfig, Settings
from intake.errors import ConfigError, MailboxError, PermanentDeliveryError, TemporaryDeliveryError

_CRLF = re.compile(rb"\r?\n")
_CONNECTION_ERRORS = (OSError, socket.timeout, smtplib.SMTPServerDisconnected, ssl.SSLError)


class SmtpSender:
    """Use as a context manager around a delivery run."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.host, self.port = settings["smtp.host"], settings["smtp.port"]
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> "SmtpSender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except Exception:  # closing a broken connection is best effort
                self._smtp.close()
            self._smtp = None

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.settings["smtp.ca_file"] or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def _connect(self) -> smtplib.SMTP:
        security, timeout = self.settings["smtp.security"], self.settings["smtp.timeout"]
        where = f"{self.host}:{self.port}"
        try:
            if security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=timeout, context=self._context())
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=timeout)
            smtp.ehlo()
            if security == "starttls":
                if not smtp.has_extn("starttls"):
                    smtp.close()
                    raise TemporaryDeliveryError(f"{where} does not offer STARTTLS; refusing to send without TLS")
                smtp.starttls(context=self._context())
                smtp.ehlo()
            self._authenticate(smtp)
        except (TemporaryDeliveryError, PermanentDeliveryError):
            raise
        except smtplib.SMTPAuthenticationError as exc:
            smtp.close()
            raise TemporaryDeliveryError(f"{where} refused our login: {exc.smtp_code} {_text(exc.smtp_error)}", code=exc.smtp_code) from None
        except (MailboxError, ConfigError) as exc:  # no OAuth token: nothing was sent, try again later
            smtp.close()
            raise TemporaryDeliveryError(f"no OAuth 2.0 token to sign in to {where}: {exc}") from None
        except (*_CONNECTION_ERRORS, smtplib.SMTPException) as exc:
            raise TemporaryDeliveryError(f"cannot connect to {where}: {exc}") from None
        return smtp

    def _authenticate(self, smtp: smtplib.SMTP) -> None:
        settings = self.settings
        if settings["smtp.auth"] == "oauth2":
            self._oauth_login(smtp)
        elif settings["smtp.username"]:
            smtp.login(settings["smtp.username"], settings.smtp_password)

    def _oauth_login(self, smtp: smtplib.SMTP) -> None:
        """SASL XOAUTH2 with the oauth_mailbox's token; a refused token is replaced once
        (it may have been revoked or expired early), as imap.py does."""
        from intake.oauth import TokenProvider, xoauth2_string

        mailbox = self._oauth_mailbox()
        provider = TokenProvider.for_mailbox(mailbox, base_dir=self.settings.base_dir)
        user = self.settings["smtp.username"] or mailbox.username

        def sign_in(token: str) -> None:
            # A refusal comes as a 334 error challenge (a JSON status); the client answers
            # it with an empty response and the server then ends the exchange with 535.
            smtp.auth("XOAUTH2", lambda challenge=None: xoauth2_string(user, token) if challenge is None else "",
                      initial_response_ok=True)

        try:
            sign_in(provider.token())
        except smtplib.SMTPAuthenticationError as exc:
            if exc.smtp_code != 535:
                raise
            sign_in(provider.token(force_refresh=True))

    def _oauth_mailbox(self) -> MailboxConfig:
        name = self.settings["smtp.oauth_mailbox"]
        for mailbox in self.settings.mailboxes:
            if mailbox.name == name and mailbox.auth == "oauth2":
                return mailbox
        raise ConfigError(f"names no [[mailboxes]] entry with auth = \"oauth2\": {name!r}",
                          file=str(self.settings.path), key="smtp.oauth_mailbox")

    @property
    def connected(self) -> bool:
        """False after a connection-level failure: the rest of a run should wait."""
        return self._smtp is not None

    def send(self, envelope_from: str, to: str, data: bytes) -> str:
        """Send one message; returns the server's reply to the end of DATA."""
        # smtplib fixes line endings only for str messages: SMTP needs CRLF everywhere.
        if data.count(b"\n") != data.count(b"\r\n"):  # two C scans: the regex costs more than the check
            data = _CRLF.sub(b"\r\n", data)
        self._begin(envelope_from)
        assert self._smtp is not None
        try:
            code, reply = self._smtp.rcpt(to)
            if code >= 400:
                self._after_refusal(code)
                raise _by_code(code, f"recipient refused: {code} {_text(reply)}")
            code, reply = self._smtp.data(data)
            if code >= 400:
                self._after_refusal(code)
                raise _by_code(code, f"message refused: {code} {_text(reply)}")
            return f"{code} {_text(reply)}"
        except (TemporaryDeliveryError, PermanentDeliveryError):
            raise
        except smtplib.SMTPResponseException as exc:
            self._after_refusal(exc.smtp_code)
            raise _by_code(exc.smtp_code, f"{exc.smtp_code} {_text(exc.smtp_error)}") from None
        except (*_CONNECTION_ERRORS, smtplib.SMTPException) as exc:
            self._drop()
            raise TemporaryDeliveryError(f"connection to {self.host}:{self.port} failed: {exc}") from None

    def _begin(self, envelope_from: str) -> None:
        """MAIL FROM on a usable connection. Servers close idle connections: a reused one
        found dead is replaced once (safe, as nothing of this message was sent yet)."""
        reused = self._smtp is not None
        if self._smtp is None:
            self._smtp = self._connect()
        try:
            self._mail(envelope_from)
        except _StaleConnection as exc:
            self._drop()
            if not reused:
                raise TemporaryDeliveryError(f"{self.host}:{self.port} closed the connection before MAIL FROM: {exc}") from None
            self._begin(envelope_from)  # on a fresh connection: at most one retry

    def _mail(self, envelope_from: str) -> None:
        """MAIL FROM; a dead connection becomes _StaleConnection, a refusal a delivery error."""
        assert self._smtp is not None
        try:
            code, reply = self._smtp.mail(envelope_from)
        except (*_CONNECTION_ERRORS,) as exc:
            raise _StaleConnection(str(exc)) from None
        if code == 421:  # a server closing an idle connection answers our next command so
            raise _StaleConnection(_text(reply))
        if code >= 400:
            self._after_refusal(code)
            raise _by_code(code, f"sender refused: {code} {_text(reply)}")

    def _after_refusal(self, code: int) -> None:
        # 421 means the server is closing the channel (RFC 5321 4.2.3): do not reuse it.
        if code == 421:
            self._drop()
        else:
            self._reset()

    def _reset(self) -> None:
        try:
            if self._smtp is not None:
                self._smtp.rset()
        except Exception:  # a failed RSET means the connection is unusable: start afresh next time
            self._drop()

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
        self._smtp = None


class _StaleConnection(Exception):
    """The reused connection died before this message's MAIL FROM (internal to this module)."""


def _by_code(code: int, message: str) -> TemporaryDeliveryError | PermanentDeliveryError:
    return PermanentDeliveryError(message, code=code) if 500 <= code < 600 else TemporaryDeliveryError(message, code=code)


def _text(value: bytes | str) -> str:
    return (value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)).replace("\n", " ").strip()


def check_smtp(settings: Settings) -> tuple[bool, str]:
    """Connect (with TLS and AUTH as configured) and say hello: for `intake check`."""
    sender = SmtpSender(settings)
    try:
        sender._smtp = sender._connect()
        code, _ = sender._smtp.noop()
        return code == 250, f"{sender.host}:{sender.port} ({settings['smtp.security']}) answers"
    except (TemporaryDeliveryError, PermanentDeliveryError) as exc:
        return False, exc.reason
    finally:
        sender.close()
