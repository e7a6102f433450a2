"""OAuth 2.0 access tokens for signing in to IMAP and SMTP with SASL XOAUTH2.

    provider = TokenProvider.for_mailbox(cfg, base_dir=settings.base_dir)
    client.oauth2_login(cfg.username, provider.token())        # imap.py
    smtp.auth("XOAUTH2", lambda c=None: xoauth2_string(user, token) if c is None else "")  # smtp.py
    on a refused login: provider.token(force_refresh=True), once (IMAP and SMTP alike)

Two providers, two flows:
- microsoft: msal (Entra ID / Microsoft 365 / NHSmail). client_credentials is app-only
  (IMAP.AccessAsApp, SMTP.SendAsApp); delegated uses a device-code sign-in once
  (`intake auth login`) and then msal's serialised token cache.
- generic: any OAuth 2.0 token endpoint (`oauth_token_url`): client_credentials and
  refresh_token grants, and the RFC 8628 device grant for the first sign-in.

Delegated refresh tokens rotate: the cache file is rewritten (atomically, mode 0600) after
every acquisition, or the next start would present a refresh token that is already spent.
A failed acquisition is recorded beside the cache (`<name>.status.json`, no secrets), so
`intake check` and the dashboard can warn (`credential_warnings`) from another process.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

from intake.config import MailboxConfig, Settings
from intake.errors import ConfigError, MailboxAuthError, MailboxUnavailable

# Renew this long before the token's stated expiry: a token must not lapse between
# fetching it and the server checking it, and clocks drift.
EXPIRY_MARGIN = 120
SECRET_WARNING_DAYS = 30
HTTP_TIMEOUT = 30
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# msal adds these itself and refuses them in a scope list.
_MSAL_RESERVED = {"openid", "profile", "offline_access"}

_providers: dict[tuple[MailboxConfig, Path, str | None], "TokenProvider"] = {}
_providers_lock = threading.Lock()


def xoauth2_string(user: str, token: str) -> str:
    """The SASL XOAUTH2 initial response (before base64), as Google and Microsoft define it."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


def token_cache_path(cfg: MailboxConfig, base_dir: Path) -> Path:
    """Where the delegated flow's token cache lives (default var/tokens/<name>.json)."""
    path = Path(cfg.token_cache or f"var/tokens/{cfg.name}.json")
    return path if path.is_absolute() else base_dir / path


def status_path(cfg: MailboxConfig, base_dir: Path) -> Path:
    cache = token_cache_path(cfg, base_dir)
    return cache.with_name(cache.stem + ".status.json")


class TokenProvider:
    """Hands out a valid access token for one mailbox's account, refreshing when needed.

    One provider per mailbox per process (`for_mailbox`), so the IMAP poller and the SMTP
    sender share one cached token and never both spend the same rotating refresh token."""

    def __init__(self, cfg: MailboxConfig, base_dir: Path, *, now: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.base_dir = base_dir
        self.now = now
        self._lock = threading.Lock()
        self._access: tuple[str, float] | None = None  # (token, expires_at)

    @classmethod
    def for_mailbox(cls, cfg: MailboxConfig, *, base_dir: Path | None = None,
                    authority: str | None = None) -> "TokenProvider":
        """The shared provider for `cfg`. `authority` overrides msal's Entra authority (an
        OpenID issuer URL; tests point it at a local server)."""
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        key = (cfg, base.resolve(), authority)
        with _providers_lock:
            if key not in _providers:
                if cfg.oauth_provider == "microsoft":
                    _providers[key] = MicrosoftTokenProvider(cfg, base, authority=authority)
                else:
                    _providers[key] = GenericTokenProvider(cfg, base)
            return _providers[key]

    def token(self, *, force_refresh: bool = False) -> str:
        """A valid access token; raises MailboxAuthError when the token endpoint refuses
        (wrong secret, revoked consent, spent refresh token) and MailboxUnavailable when it
        cannot be reached."""
        with self._lock:
            if not force_refresh and self._access and self._access[1] - EXPIRY_MARGIN > self.now():
                return self._access[0]
            try:
                token, expires_in = self._acquire(force_refresh=force_refresh)
            except (MailboxAuthError, MailboxUnavailable) as exc:
                self._record_failure(exc.reason)
                raise
            self._access = (token, self.now() + expires_in)
            status_path(self.cfg, self.base_dir).unlink(missing_ok=True)
            return token

    @property
    def scopes(self) -> list[str]:
        return (self.cfg.oauth_scope or "https://outlook.office365.com/.default").split()

    def _acquire(self, *, force_refresh: bool) -> tuple[str, float]:
        raise NotImplementedError

    def _record_failure(self, reason: str) -> None:
        record = {"at": dt.datetime.fromtimestamp(self.now(), dt.timezone.utc).isoformat(timespec="seconds"),
                  "reason": reason}
        write_private(status_path(self.cfg, self.base_dir), json.dumps(record))

    def _fail(self, reason: str) -> MailboxAuthError:
        return MailboxAuthError(self.cfg.name, reason)


# -- generic OAuth 2.0 --------------------------------------------------------------------

class GenericTokenProvider(TokenProvider):
    """Any OAuth 2.0 server: POSTs grants to `oauth_token_url` (verified with oauth_ca_file)."""

    def _acquire(self, *, force_refresh: bool) -> tuple[str, float]:
        if self.cfg.oauth_flow == "client_credentials":
            body = self._post({"grant_type": "client_credentials", "scope": " ".join(self.scopes)})
        else:
            body = self._refresh()
        return _access_token(body, self.cfg.oauth_token_url, self._fail)

    def _refresh(self) -> dict[str, Any]:
        path = token_cache_path(self.cfg, self.base_dir)
        cache = read_cache(path)
        if not cache.get("refresh_token"):
            raise self._fail(f"no token cache at {path}: run `intake auth login {self.cfg.name}` once")
        body = self._post({"grant_type": "refresh_token", "refresh_token": cache["refresh_token"],
                           "scope": " ".join(self.scopes)})
        # The server may rotate the refresh token; the old one is then spent. Save at once.
        cache.update(refresh_token=body.get("refresh_token") or cache["refresh_token"],
                     refreshed_at=dt.datetime.fromtimestamp(self.now(), dt.timezone.utc).isoformat(timespec="seconds"))
        write_private(path, json.dumps(cache))
        return body

    def _post(self, form: dict[str, str], url: str | None = None) -> dict[str, Any]:
        form = {"client_id": self.cfg.client_id, **form}
        if self.cfg.client_secret:
            form["client_secret"] = self.cfg.client_secret
        return post_form(url or self.cfg.oauth_token_url, form, self.cfg.oauth_ca_file, self.cfg.name,
                         what=form.get("grant_type", "device authorisation"))


def post_form(url: str, form: dict[str, str], ca_file: str, mailbox: str, *, what: str) -> dict[str, Any]:
    """POST a form to a token endpoint; the JSON answer, or an error naming the endpoint,
    the grant and the server's own error code and description."""
    try:
        context = ssl.create_default_context(cafile=ca_file or None)
    except OSError as exc:  # includes ssl.SSLError for a file that is not a certificate
        raise ConfigError(f"cannot use CA file {ca_file}: {exc}", key=f"mailboxes.{mailbox}.oauth_ca_file") from None
    request = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(),
                                     headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT, context=context) as response:
            return _json(response.read())
    except urllib.error.HTTPError as exc:
        body = _json(exc.read())
        detail = f"{body.get('error', 'error')}: {body.get('error_description', exc.reason)}".strip()
        if exc.code >= 500:
            raise MailboxUnavailable(mailbox, f"token endpoint {url} failed ({what}): HTTP {exc.code} {detail}") from None
        raise _oauth_error(mailbox, url, what, exc.code, body, detail) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MailboxUnavailable(mailbox, f"cannot reach token endpoint {url} ({what}): {reason}") from None


class OAuthPending(MailboxAuthError):
    """The device grant is still waiting for the person to sign in (RFC 8628 3.5)."""

    def __init__(self, mailbox: str, error: str, reason: str):
        super().__init__(mailbox, reason)
        self.error = error


def _oauth_error(mailbox: str, url: str, what: str, status: int, body: dict[str, Any], detail: str) -> MailboxAuthError:
    if body.get("error") in ("authorization_pending", "slow_down"):
        return OAuthPending(mailbox, body["error"], detail)
    return MailboxAuthError(mailbox, f"token endpoint {url} refused the {what} grant: HTTP {status} {detail}")


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _access_token(body: dict[str, Any], where: str, fail: Callable[[str], Exception]) -> tuple[str, float]:
    if "access_token" not in body:
        raise fail(f"{where} answered without an access token: {body.get('error_description') or body.get('error') or body}")
    return body["access_token"], float(body.get("expires_in") or 3600)


# -- Microsoft (msal) ---------------------------------------------------------------------

class MicrosoftTokenProvider(TokenProvider):
    """Microsoft Entra ID through msal: app-only or a delegated account from the cache."""

    def __init__(self, cfg: MailboxConfig, base_dir: Path, *, authority: str | None = None,
                 now: Callable[[], float] = time.time) -> None:
        super().__init__(cfg, base_dir, now=now)
        self.authority = authority
        self._app: Any = None
        self._cache: Any = None

    def app(self) -> Any:
        import msal

        if self._app is None:
            self._cache = msal.SerializableTokenCache()
            path = token_cache_path(self.cfg, self.base_dir)
            if self.cfg.oauth_flow == "delegated" and path.exists():
                self._cache.deserialize(path.read_text())
            kwargs: dict[str, Any] = {"token_cache": self._cache, "timeout": HTTP_TIMEOUT}
            if self.cfg.oauth_ca_file:
                kwargs["http_client"] = _session_trusting(self.cfg.oauth_ca_file)
            if self.authority:
                kwargs["oidc_authority"] = self.authority
            else:
                kwargs["authority"] = f"https://login.microsoftonline.com/{self.cfg.tenant}"
            if self.cfg.oauth_flow == "client_credentials":
                self._app = msal.ConfidentialClientApplication(self.cfg.client_id, client_credential=self.cfg.client_secret, **kwargs)
            else:
                self._app = msal.PublicClientApplication(self.cfg.client_id, **kwargs)
        return self._app

    @property
    def msal_scopes(self) -> list[str]:
        return [s for s in self.scopes if s not in _MSAL_RESERVED]

    def _acquire(self, *, force_refresh: bool) -> tuple[str, float]:
        where = self.authority or f"https://login.microsoftonline.com/{self.cfg.tenant}"
        try:
            app = self.app()
            if self.cfg.oauth_flow == "client_credentials":
                if force_refresh:
                    _drop_access_tokens(app.token_cache)  # msal refuses force_refresh for this grant
                result = app.acquire_token_for_client(scopes=self.msal_scopes)
            else:
                result = self._silent(app, force_refresh)
        except ValueError as exc:  # msal raises it for an unusable authority or tenant
            raise self._fail(f"msal cannot use authority {where}: {exc}") from None
        except OSError as exc:  # requests' ConnectionError and TLS errors are OSErrors
            raise MailboxUnavailable(self.cfg.name, f"cannot reach {where}: {exc}") from None
        self.save_cache()
        if not result or "access_token" not in result:
            error = (result or {}).get("error", "no_token")
            description = (result or {}).get("error_description", "").splitlines()[0:1]
            raise self._fail(f"{where} refused the {self.cfg.oauth_flow} grant: {error}: {' '.join(description)}")
        return result["access_token"], float(result.get("expires_in") or 3600)

    def _silent(self, app: Any, force_refresh: bool) -> dict[str, Any] | None:
        accounts = app.get_accounts(username=self.cfg.username) or app.get_accounts()
        if not accounts:
            path = token_cache_path(self.cfg, self.base_dir)
            raise self._fail(f"no signed-in account for {self.cfg.username} in {path}: run `intake auth login {self.cfg.name}`")
        return app.acquire_token_silent_with_error(self.msal_scopes, accounts[0], force_refresh=force_refresh)

    def save_cache(self) -> None:
        """Persist msal's cache after every change (its refresh tokens rotate)."""
        if self.cfg.oauth_flow == "delegated" and self._cache is not None and self._cache.has_state_changed:
            write_private(token_cache_path(self.cfg, self.base_dir), self._cache.serialize())
            self._cache.has_state_changed = False


def _session_trusting(ca_file: str) -> Any:
    """A requests session that verifies with `ca_file`. Set per request, because requests
    lets REQUESTS_CA_BUNDLE override a session's own `verify` (psf/requests#3829)."""
    import functools

    import requests

    session = requests.Session()
    session.request = functools.partial(session.request, timeout=HTTP_TIMEOUT, verify=ca_file)  # type: ignore[method-assign]
    return session


def _drop_access_tokens(cache: Any) -> None:
    for item in list(cache.search(cache.CredentialType.ACCESS_TOKEN)):
        cache.remove_at(item)


# -- files --------------------------------------------------------------------------------

def write_private(path: Path, text: str) -> None:
    """Write atomically with mode 0600: a crash leaves the old file or the new, never half,
    and no other local user can read a refresh token."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp creates 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_cache(path: Path) -> dict[str, Any]:
    try:
        return _json(path.read_bytes())
    except FileNotFoundError:
        return {}


# -- first sign-in (delegated flow) ---------------------------------------------------------

def device_login(cfg: MailboxConfig, echo: Callable[[str], None], *, base_dir: Path,
                 device_url: str = "", authority: str | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> str:
    """Sign `cfg`'s account in once with a device code; saves the token cache. Returns the
    signed-in user name. `echo` shows the person where to go and which code to enter."""
    if cfg.auth != "oauth2" or cfg.oauth_flow != "delegated":
        raise MailboxAuthError(cfg.name, 'device sign-in is for auth = "oauth2" with oauth_flow = "delegated"')
    provider = TokenProvider.for_mailbox(cfg, base_dir=base_dir, authority=authority)
    if isinstance(provider, MicrosoftTokenProvider):
        return _msal_device_login(provider, echo)
    if not device_url:
        raise MailboxAuthError(cfg.name, "the generic provider needs the device authorisation endpoint (--device-url)")
    return _generic_device_login(provider, device_url, echo, sleep)


def _msal_device_login(provider: MicrosoftTokenProvider, echo: Callable[[str], None]) -> str:
    app, cfg = provider.app(), provider.cfg
    flow = app.initiate_device_flow(scopes=provider.msal_scopes)
    if "user_code" not in flow:
        raise MailboxAuthError(cfg.name, f"cannot start device sign-in: {flow.get('error')}: {flow.get('error_description', '')}")
    echo(flow["message"])
    result = app.acquire_token_by_device_flow(flow)  # polls until signed in, declined or expired
    provider.save_cache()
    if "access_token" not in result:
        raise MailboxAuthError(cfg.name, f"device sign-in failed: {result.get('error')}: {result.get('error_description', '')}")
    with provider._lock:
        provider._access = (result["access_token"], provider.now() + float(result.get("expires_in") or 3600))
    claims = result.get("id_token_claims") or {}
    return str(claims.get("preferred_username") or cfg.username)


def _generic_device_login(provider: GenericTokenProvider, device_url: str, echo: Callable[[str], None],
                          sleep: Callable[[float], None]) -> str:
    cfg = provider.cfg
    start = provider._post({"scope": " ".join(provider.scopes)}, url=device_url)
    uri = start.get("verification_uri_complete") or start.get("verification_uri")
    echo(start.get("message") or f"To sign in, open {uri} and enter the code {start.get('user_code')}.")
    interval = float(start.get("interval") or 5)
    deadline = provider.now() + float(start.get("expires_in") or 900)
    while provider.now() < deadline:
        sleep(interval)
        try:
            body = provider._post({"grant_type": DEVICE_GRANT, "device_code": start["device_code"]})
        except OAuthPending as pending:
            if pending.error == "slow_down":
                interval += 5  # RFC 8628 3.5
            continue
        token, expires_in = _access_token(body, cfg.oauth_token_url, provider._fail)
        cache = {"refresh_token": body.get("refresh_token", ""), "username": _username(body) or cfg.username,
                 "refreshed_at": dt.datetime.fromtimestamp(provider.now(), dt.timezone.utc).isoformat(timespec="seconds")}
        if not cache["refresh_token"]:
            raise MailboxAuthError(cfg.name, f"{cfg.oauth_token_url} gave no refresh token: ask for offline access in oauth_scope")
        write_private(token_cache_path(cfg, provider.base_dir), json.dumps(cache))
        with provider._lock:
            provider._access = (token, provider.now() + expires_in)
        return cache["username"]
    raise MailboxAuthError(cfg.name, "the device code expired before anyone signed in")


def _username(body: dict[str, Any]) -> str:
    """preferred_username from an id_token, read without verifying (it is only displayed)."""
    try:
        payload = body["id_token"].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims.get("preferred_username") or claims.get("email") or "")
    except (KeyError, IndexError, ValueError, AttributeError):
        return ""


# -- warnings for `intake check` and the dashboard --------------------------------------------

def settings_warnings(settings: Settings, now: dt.datetime) -> list[str]:
    """credential_warnings of every OAuth 2.0 registration in use: each enabled mailbox's,
    and the one SMTP signs in with (even when its mailbox is not polled)."""
    in_use = [m for m in settings.mailboxes if m.enabled or
              (settings["smtp.auth"] == "oauth2" and m.name == settings["smtp.oauth_mailbox"])]
    return [w for cfg in in_use for w in credential_warnings(cfg, now, base_dir=settings.base_dir)]


def credential_warnings(cfg: MailboxConfig, now: dt.datetime, *, base_dir: Path | None = None) -> list[str]:
    """What an administrator must act on before sign-in breaks (or now that it has)."""
    if cfg.auth != "oauth2":
        return []
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    warnings: list[str] = []
    if cfg.client_secret_expires:
        expires = dt.date.fromisoformat(cfg.client_secret_expires)
        days = (expires - now.date()).days
        if days < 0:
            warnings.append(f"mailbox {cfg.name}: the OAuth client secret expired on {expires}: create a new one and update client_secret")
        elif days <= SECRET_WARNING_DAYS:
            warnings.append(f"mailbox {cfg.name}: the OAuth client secret expires on {expires} (in {days} days): create a new one now")
    if cfg.oauth_flow == "delegated" and not token_cache_path(cfg, base).exists():
        warnings.append(f"mailbox {cfg.name}: not signed in (no token cache at {token_cache_path(cfg, base)}): run `intake auth login {cfg.name}`")
    failure = read_cache(status_path(cfg, base))
    if failure.get("reason"):
        warnings.append(f"mailbox {cfg.name}: the last token refresh failed at {failure.get('at')}: {failure['reason']}")
    return warnings
