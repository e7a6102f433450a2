"""A small OAuth 2.0 authorisation server for tests: token, device and introspection
endpoints over HTTPS on loopback, with its own test CA (`certificates()`).

    server = OAuthServer().start()
    server.add_client("app", "secret", mailbox="swig@example.org")   # app-only access
    server.token_url, server.introspection_url, server.ca_file
    server.expire_tokens()          # every access token issued so far becomes inactive
    server.grants                   # grant types served, in order (count refreshes with it)

Grants: client_credentials (the token acts for the client's mailbox, as an Exchange
application access policy does), refresh_token (the refresh token rotates: the old one is
refused once used), and the RFC 8628 device grant (`approve(user_code, username)` plays the
person signing in). Introspection is RFC 7662 (`POST token=...`), which is what Dovecot's
oauth2 passdb calls. `authority` serves an OpenID configuration so msal can be pointed here.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote

from tests.servers.certs import certificates
from tests.servers.dovecot import free_port

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass
class _Issued:
    username: str
    client_id: str
    expires_at: float
    active: bool = True


@dataclass
class _Device:
    client_id: str
    scope: str
    user_code: str
    username: str = ""
    denied: bool = False


@dataclass
class _State:
    clients: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # id -> (secret, mailbox)
    access: dict[str, _Issued] = field(default_factory=dict)
    refresh: dict[str, tuple[str, str]] = field(default_factory=dict)  # token -> (client_id, username)
    devices: dict[str, _Device] = field(default_factory=dict)  # device_code -> state
    grants: list[str] = field(default_factory=list)
    introspections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str):
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


class OAuthServer:
    """Start with `OAuthServer().start()`, `stop()` at the end."""

    TENANT = "test-tenant"

    def __init__(self, *, token_lifetime: int = 3600) -> None:
        self.token_lifetime = token_lifetime
        self.port = free_port()
        self.state = _State()
        self.ca_file = certificates().ca_file
        self._httpd: ThreadingHTTPServer | None = None

    # -- addresses -----------------------------------------------------------------------
    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def authority(self) -> str:
        """An OpenID authority (issuer) for msal's `oidc_authority`."""
        return f"{self.base}/{self.TENANT}/v2.0"

    @property
    def token_url(self) -> str:
        return f"{self.base}/{self.TENANT}/oauth2/v2.0/token"

    @property
    def device_url(self) -> str:
        return f"{self.base}/{self.TENANT}/oauth2/v2.0/devicecode"

    @property
    def introspection_url(self) -> str:
        return f"{self.base}/introspect"

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> "OAuthServer":
        certs = certificates()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certs.cert_file, certs.key_file)
        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        httpd.daemon_threads = True
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._httpd = httpd
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    # -- what a test arranges --------------------------------------------------------------
    def add_client(self, client_id: str, secret: str | None = None, *, mailbox: str = "") -> None:
        """A confidential client (with a secret) may use client_credentials for `mailbox`;
        a public client (no secret) may only use the device and refresh grants."""
        with self.state.lock:
            self.state.clients[client_id] = (secret, mailbox)

    def approve(self, user_code: str, username: str) -> None:
        """The person signs in at the verification page and enters `user_code`."""
        with self.state.lock:
            for device in self.state.devices.values():
                if device.user_code == user_code:
                    device.username = username
                    return
        raise KeyError(user_code)

    def deny(self, user_code: str) -> None:
        with self.state.lock:
            for device in self.state.devices.values():
                if device.user_code == user_code:
                    device.denied = True

    def expire_tokens(self) -> None:
        """Every access token issued so far stops working (as if its lifetime were over)."""
        with self.state.lock:
            for issued in self.state.access.values():
                issued.active = False

    def revoke_refresh_tokens(self) -> None:
        """Every refresh token stops working (password reset, session revoked)."""
        with self.state.lock:
            self.state.refresh.clear()

    def refresh_tokens_of(self, username: str) -> list[str]:
        with self.state.lock:
            return [t for t, (_, user) in self.state.refresh.items() if user == username]

    @property
    def grants(self) -> list[str]:
        with self.state.lock:
            return list(self.state.grants)

    @property
    def introspections(self) -> int:
        with self.state.lock:
            return self.state.introspections

    # -- the endpoints (called by the handler, under no lock) ----------------------------
    def token_endpoint(self, form: dict[str, str], basic: tuple[str, str] | None) -> dict:
        client_id, secret = basic or (form.get("client_id", ""), form.get("client_secret"))
        grant = form.get("grant_type", "")
        with self.state.lock:
            if client_id not in self.state.clients:
                raise OAuthError(401, "invalid_client", f"unknown client {client_id!r}")
            known_secret, mailbox = self.state.clients[client_id]
            if known_secret is not None and secret != known_secret:
                raise OAuthError(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
            if grant == "client_credentials":
                if known_secret is None:
                    raise OAuthError(400, "unauthorized_client", "a public client cannot use client_credentials")
                return self._issue(grant, client_id, mailbox, refresh=False, scope=form.get("scope", ""))
            if grant == "refresh_token":
                owner = self.state.refresh.pop(form.get("refresh_token", ""), None)  # used once: it rotates
                if owner is None or owner[0] != client_id:
                    raise OAuthError(400, "invalid_grant", "AADSTS70000: the refresh token is invalid or was already used.")
                return self._issue(grant, client_id, owner[1], refresh=True, scope=form.get("scope", ""))
            if grant == DEVICE_GRANT:
                device = self.state.devices.get(form.get("device_code", ""))
                if device is None or device.client_id != client_id:
                    raise OAuthError(400, "expired_token", "the device code is unknown or expired")
                if device.denied:
                    raise OAuthError(400, "access_denied", "the user declined")
                if not device.username:
                    raise OAuthError(400, "authorization_pending", "waiting for the user to sign in")
                del self.state.devices[form["device_code"]]
                return self._issue(grant, client_id, device.username, refresh=True, scope=device.scope)
        raise OAuthError(400, "unsupported_grant_type", f"grant {grant!r} is not supported")

    def _issue(self, grant: str, client_id: str, username: str, *, refresh: bool, scope: str) -> dict:
        self.state.grants.append(grant)
        access = "at-" + secrets.token_urlsafe(24)
        self.state.access[access] = _Issued(username, client_id, time.time() + self.token_lifetime)
        body: dict = {"token_type": "Bearer", "access_token": access, "expires_in": self.token_lifetime,
                      "scope": scope}
        if refresh:
            token = "rt-" + secrets.token_urlsafe(24)
            self.state.refresh[token] = (client_id, username)
            body["refresh_token"] = token
            body["id_token"] = _id_token(self.authority, client_id, username)
            body["client_info"] = _b64(json.dumps({"uid": username, "utid": self.TENANT}).encode())
        return body

    def device_endpoint(self, form: dict[str, str]) -> dict:
        client_id = form.get("client_id", "")
        with self.state.lock:
            if client_id not in self.state.clients:
                raise OAuthError(400, "invalid_client", f"unknown client {client_id!r}")
            code, user_code = secrets.token_urlsafe(16), secrets.token_hex(4).upper()
            self.state.devices[code] = _Device(client_id, form.get("scope", ""), user_code)
        uri = f"{self.base}/device"
        return {"device_code": code, "user_code": user_code, "verification_uri": uri, "expires_in": 30,  # short: a test that never approves fails fast
                "interval": 1, "message": f"To sign in, open {uri} and enter the code {user_code}."}

    def introspect(self, form: dict[str, str]) -> dict:
        with self.state.lock:
            self.state.introspections += 1
            issued = self.state.access.get(form.get("token", ""))
            if issued is None or not issued.active or issued.expires_at <= time.time():
                return {"active": False}
            return {"active": True, "username": issued.username, "client_id": issued.client_id,
                    "exp": int(issued.expires_at), "token_type": "Bearer"}

    def openid_configuration(self) -> dict:
        return {"issuer": self.authority, "token_endpoint": self.token_url,
                "device_authorization_endpoint": self.device_url,
                "authorization_endpoint": f"{self.base}/{self.TENANT}/oauth2/v2.0/authorize"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _id_token(issuer: str, client_id: str, username: str) -> str:
    """An unsigned id_token: msal reads the account from it; nobody verifies it here."""
    now = int(time.time())
    claims = {"iss": issuer, "aud": client_id, "sub": username, "oid": username, "tid": OAuthServer.TENANT,
              "preferred_username": username, "iat": now, "exp": now + 3600}
    return ".".join((_b64(b'{"alg":"none","typ":"JWT"}'), _b64(json.dumps(claims).encode()), ""))


def _handler_for(server: OAuthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
            pass

        def do_GET(self) -> None:  # noqa: N802
            if self.path.split("?")[0].endswith("/.well-known/openid-configuration"):
                self._reply(200, server.openid_configuration())
            else:
                self._reply(404, {"error": "not_found"})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
            form = {k: v[0] for k, v in raw.items()}
            path = self.path.split("?")[0]
            try:
                if path == "/introspect":
                    self._reply(200, server.introspect(form))
                elif path.endswith("/token"):
                    self._reply(200, server.token_endpoint(form, self._basic()))
                elif path.endswith("/devicecode"):
                    self._reply(200, server.device_endpoint(form))
                else:
                    self._reply(404, {"error": "not_found"})
            except OAuthError as exc:
                self._reply(exc.status, {"error": exc.error, "error_description": exc.description})

        def _basic(self) -> tuple[str, str] | None:
            header = self.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                return None
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return unquote(user), unquote(password)

        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
