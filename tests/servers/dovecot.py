"""A private Dovecot IMAP server for tests: generated config, loopback ports, no system config.

Runs as root (CI) with mail stored as the `vmail` system user, which it creates if missing.
Users are added at run time to a passwd-file.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterable, Sequence

from imapclient import IMAPClient


class DovecotUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ensure_vmail() -> tuple[int, int]:
    try:
        pw = pwd.getpwnam("vmail")
    except KeyError:
        if os.geteuid() != 0:
            raise DovecotUnavailable("the tests need a `vmail` system user: run `make test` as root once") from None
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "vmail"], check=True)
        pw = pwd.getpwnam("vmail")
    return pw.pw_uid, pw.pw_gid


CONFIG = """\
instance_name = {name}
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
info_log_path = {dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{dir}/server.crt
ssl_key = <{dir}/server.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
login_trusted_networks = 127.0.0.0/8
mail_fsync = never
mail_location = maildir:~/Maildir
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
last_valid_gid = {gid}
default_internal_user = vmail
default_internal_group = vmail
default_login_user = vmail
# Every test user shares one password: users need no set-up, and a wrong password is
# still refused. (A passwd-file is re-read at most once a second, which made set-up slow.)
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={dir}/mail/%Lu
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  # No growing delays after failed logins (Dovecot's documented way to turn the auth
  # penalty off): tests fail logins on purpose.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  chroot =
}}
protocol imap {{
  imap_idle_notify_interval = 1 secs
}}
"""


class Dovecot:
    """Start with `Dovecot().start()`; `stop()` at the end."""

    PASSWORD = "pw"

    def __init__(self) -> None:
        if not shutil.which("dovecot"):
            raise DovecotUnavailable("dovecot is not installed: run `make test` (it installs dovecot-imapd)")
        self.uid, self.gid = _ensure_vmail()
        # Short path: Dovecot's unix sockets must stay under 107 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="dv", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.tls_port = free_port()
        self.conf = self.dir / "dovecot.conf"
        self.ca_file = str(self.dir / "ca.crt")
        self._users: dict[str, str] = {}

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> "Dovecot":
        if not self.conf.exists():
            self._make_certs()
            for sub in ("run", "state", "mail"):
                (self.dir / sub).mkdir(exist_ok=True)
            shutil.chown(self.dir / "mail", self.uid, self.gid)
            self.conf.write_text(CONFIG.format(name=self.dir.name, dir=self.dir, uid=self.uid, gid=self.gid,
                                               port=self.port, tls_port=self.tls_port, password=self.PASSWORD))
        with open(self.dir / "start.err", "wb") as err:
            # Dovecot daemonises; its children inherit stdout, so never capture it with a pipe.
            result = subprocess.run(["dovecot", "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=err, timeout=30)
        if result.returncode != 0:
            raise DovecotUnavailable(f"dovecot failed to start: {(self.dir / 'start.err').read_text()}")
        self._wait(self.port)
        self._wait(self.tls_port)
        return self

    def stop(self) -> None:
        subprocess.run(["doveadm", "-c", str(self.conf), "stop"], capture_output=True, timeout=30)
        deadline = time.monotonic() + 10
        pidfile = self.dir / "run" / "master.pid"
        while pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self) -> str:
        path = self.dir / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _wait(self, port: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.02)
        raise DovecotUnavailable(f"dovecot did not listen on {port}:\n{self.logs()[-2000:]}")

    def _make_certs(self) -> None:
        d = str(self.dir)
        run = lambda *a: subprocess.run(list(a), check=True, capture_output=True, timeout=60)  # noqa: E731
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=intake test CA",
            "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.crt", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", f"{d}/server.key", "-out", f"{d}/server.csr")
        (self.dir / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        run("openssl", "x509", "-req", "-in", f"{d}/server.csr", "-CA", f"{d}/ca.crt", "-CAkey", f"{d}/ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{d}/server.crt", "-extfile", f"{d}/ext.cnf")
        os.chmod(f"{d}/server.key", 0o644)

    # -- users and mail ------------------------------------------------------------------
    def add_user(self, email: str, password: str = PASSWORD) -> str:
        """Users exist on first login; every user's password is Dovecot.PASSWORD."""
        if password != self.PASSWORD:
            raise ValueError(f"test users all have the password {self.PASSWORD!r}")
        self._users[email.lower()] = password
        return email

    def client(self, user: str) -> IMAPClient:
        c = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=30)
        c.login(user, self.PASSWORD)
        return c

    def append(self, user: str, folder: str, data: bytes, flags: Sequence[str] = (), internal_date=None) -> int:  # type: ignore[no-untyped-def]
        with self.client(user) as c:
            if not c.folder_exists(folder):
                c.create_folder(folder)
            resp = c.append(folder, data, flags=flags, msg_time=internal_date)
            return _appended_uid(resp)

    def append_many(self, user: str, folder: str, datas: Iterable[bytes]) -> list[int]:
        """MULTIAPPEND in chunks (RFC 3502) when the server supports it: fast set-up."""
        datas = list(datas)
        uids: list[int] = []
        with self.client(user) as c:
            if not c.folder_exists(folder):
                c.create_folder(folder)
            for i in range(0, len(datas), 100):
                c.multiappend(folder, datas[i:i + 100])
            c.select_folder(folder, readonly=True)
            uids = sorted(c.search("ALL"))
        return uids

    def uidvalidity(self, user: str, folder: str) -> int:
        with self.client(user) as c:
            return int(c.folder_status(folder, ["UIDVALIDITY"])[b"UIDVALIDITY"])

    def uids(self, user: str, folder: str) -> list[int]:
        with self.client(user) as c:
            if not c.folder_exists(folder):
                return []
            c.select_folder(folder, readonly=True)
            return sorted(c.search("ALL"))

    def fetch_all(self, user: str, folder: str) -> list[bytes]:
        with self.client(user) as c:
            c.select_folder(folder, readonly=True)
            uids = sorted(c.search("ALL"))
            data = c.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
            return [data[u][b"BODY[]"] for u in uids]

    def delete_folder(self, user: str, folder: str) -> None:
        with self.client(user) as c:
            if folder.upper() == "INBOX":
                c.select_folder("INBOX")
                uids = c.search("ALL")
                if uids:
                    c.delete_messages(uids)
                    c.expunge()
            else:
                c.delete_folder(folder)

    def recreate_folder_with_new_uidvalidity(self, user: str, folder: str) -> None:
        """Give the folder a new UIDVALIDITY with the same messages in it (as a server migration does)."""
        messages = self.fetch_all(user, folder)
        home = self.dir / "mail" / user.lower() / "Maildir"
        if folder.upper() == "INBOX":
            for name in ("dovecot-uidlist", "dovecot.index", "dovecot.index.cache", "dovecot.index.log"):
                (home / name).unlink(missing_ok=True)
            for sub in ("cur", "new"):
                for f in (home / sub).glob("*"):
                    f.unlink()
            time.sleep(1.1)  # UIDVALIDITY is a timestamp: make sure it changes
        else:
            self.delete_folder(user, folder)
            time.sleep(1.1)
        subprocess.run(["doveadm", "-c", str(self.conf), "force-resync", "-u", user, folder], capture_output=True, timeout=30)
        self.append_many(user, folder, messages)


def _appended_uid(resp: bytes | str) -> int:
    text = resp.decode() if isinstance(resp, bytes) else str(resp)
    # "[APPENDUID <uidvalidity> <uid>] Append completed."
    if "APPENDUID" in text:
        return int(text.split("APPENDUID", 1)[1].split("]", 1)[0].split()[1])
    return 0
