"""A private Dovecot IMAP server for tests: generated config, loopback ports, no system config.

Runs as root (CI) with mail stored as the `vmail` system user, which it creates if missing.
Users are added at run time with `add_user`; each gets its own passwd-file, so a new user
can log in at once (Dovecot re-checks a changed passwd-file at most once a second, which
made a single shared file flaky for users created and used in the same second).

    server = Dovecot().start()          # IMAP on .port (STARTTLS offered), TLS on .tls_port
    server.add_user("a@example.org")    # password Dovecot.PASSWORD unless given
    uid = server.append("a@example.org", "INBOX", b"Subject: hi\\r\\n\\r\\nbody\\r\\n")
    server.cleanup()

`Dovecot(ssl=False)` starts a server without any TLS (no STARTTLS capability, no TLS port),
for testing that a client refuses to fall back to plain text.
"""

from __future__ import annotations

import datetime as dt
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterable, Sequence

from imapclient import IMAPClient


class DovecotUnavailable(RuntimeError):
    """Dovecot cannot be run here; the message says what to install or do."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ensure_vmail() -> tuple[int, int]:
    try:
        pw = pwd.getpwnam("vmail")
    except KeyError:
        if os.geteuid() != 0:
            raise DovecotUnavailable("the tests need a `vmail` system user (Dovecot will not store mail as "
                                     "root): run `make test` as root once, or `useradd --system vmail`") from None
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
{ssl_settings}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
login_trusted_networks = 127.0.0.0/8
mail_fsync = never
mail_location = maildir:~/Maildir
mail_home = {dir}/mail/%Lu
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
last_valid_gid = {gid}
default_internal_user = vmail
default_internal_group = vmail
default_login_user = vmail
# One passwd-file per user (the path has a variable): a user added a moment ago is found
# at once, and an unknown user is simply "unknown".
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%Lu {dir}/users/%Lu
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
  chroot =
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
protocol imap {{
  imap_idle_notify_interval = 1 secs
}}
"""

SSL_ON = """\
ssl = yes
ssl_cert = <{dir}/server.crt
ssl_key = <{dir}/server.key
ssl_min_protocol = TLSv1.2"""


class Dovecot:
    """Start with `Dovecot().start()`; `cleanup()` at the end (`stop()`/`start()` restart it)."""

    PASSWORD = "pw"

    def __init__(self, *, ssl: bool = True) -> None:
        if not shutil.which("dovecot") or not shutil.which("doveadm"):
            raise DovecotUnavailable("dovecot is not installed: run `make test` (it installs dovecot-imapd)")
        self.uid, self.gid = _ensure_vmail()
        self.ssl = ssl
        # Short path: Dovecot's unix sockets must stay under 107 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="dv", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        # Without TLS there is no implicit-TLS listener; a port is still reserved so the
        # config has one shape (port 0 would make Dovecot pick any port).
        self.tls_port = free_port()
        self.conf = self.dir / "dovecot.conf"
        self.ca_file = str(self.dir / "ca.crt") if ssl else ""
        self._passwords: dict[str, str] = {}

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> "Dovecot":
        """Start (or restart after `stop()`) on the same ports and data."""
        if not self.conf.exists():
            self._write_config()
        with open(self.dir / "start.err", "wb") as err:
            # Dovecot daemonises; its children inherit stdout, so never capture it with a pipe.
            result = subprocess.run(["dovecot", "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=err, timeout=30)
        if result.returncode != 0:
            raise DovecotUnavailable(f"dovecot failed to start: {(self.dir / 'start.err').read_text()}")
        self._wait_listening(self.port)
        if self.ssl:
            self._wait_listening(self.tls_port)
        return self

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM to the master; it takes its children along).
        Takes about a second: the master waits for its processes to finish."""
        pid = self._master_pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        self._wait_gone(pid)

    def kill(self) -> None:
        """Stop at once: SIGKILL to Dovecot's process group (the master and all its children)."""
        pid = self._master_pid()
        if pid is None:
            return
        os.killpg(pid, signal.SIGKILL)
        self._wait_gone(pid)
        (self.dir / "run" / "master.pid").unlink(missing_ok=True)

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def master_pid(self) -> int:
        """The running master's pid, which is also its process group (bench/ reads its CPU)."""
        pid = self._master_pid()
        if pid is None:
            raise RuntimeError("dovecot is not running")
        return pid

    def _master_pid(self) -> int | None:
        try:
            pid = int((self.dir / "run" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _alive(pid) else None

    def _wait_gone(self, pid: int) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (_alive(pid) or self._listening(self.port)):
            time.sleep(0.01)

    def logs(self) -> str:
        path = self.dir / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _write_config(self) -> None:
        if self.ssl:
            self._make_certs()
        for sub in ("run", "state", "mail", "users"):
            (self.dir / sub).mkdir(exist_ok=True)
        shutil.chown(self.dir / "mail", self.uid, self.gid)
        ssl_settings = SSL_ON.format(dir=self.dir) if self.ssl else "ssl = no"
        config = CONFIG.format(name=self.dir.name, dir=self.dir, uid=self.uid, gid=self.gid,
                               port=self.port, tls_port=self.tls_port, ssl_settings=ssl_settings)
        if not self.ssl:
            config = config.replace("    ssl = yes\n", "").replace(
                f"  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {self.tls_port}\n  }}\n", "")
        self.conf.write_text(config)

    def _listening(self, port: int) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    def _wait_listening(self, port: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._listening(port):
                return
            time.sleep(0.01)
        raise DovecotUnavailable(f"dovecot did not listen on {port}:\n{self.logs()[-2000:]}")

    def _make_certs(self) -> None:
        """A throwaway CA and a server certificate for localhost/127.0.0.1 (EC keys: fast)."""
        d = str(self.dir)

        def run(*args: str) -> None:
            subprocess.run(list(args), check=True, capture_output=True, timeout=60)

        key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        run("openssl", "req", "-x509", *key, "-days", "2", "-subj", "/CN=intake test CA",
            "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.crt", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        run("openssl", "req", *key, "-subj", "/CN=localhost", "-keyout", f"{d}/server.key", "-out", f"{d}/server.csr")
        (self.dir / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        run("openssl", "x509", "-req", "-in", f"{d}/server.csr", "-CA", f"{d}/ca.crt", "-CAkey", f"{d}/ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{d}/server.crt", "-extfile", f"{d}/ext.cnf")
        os.chmod(f"{d}/server.key", 0o644)

    # -- users ---------------------------------------------------------------------------
    def add_user(self, email: str, password: str = PASSWORD) -> str:
        """Create (or re-password) a user; returns the email. Its mailbox appears on first use."""
        if ":" in email or "/" in email or ":" in password or "\n" in email + password:
            raise ValueError("user names and passwords for the test server may not contain ':', '/' or newlines")
        key = email.lower()
        path = self.dir / "users" / key
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{key}:{{PLAIN}}{password}::::::\n")
        os.replace(tmp, path)  # atomic: Dovecot never reads half a line
        self._passwords[key] = password
        return email

    def password(self, user: str) -> str:
        return self._passwords.get(user.lower(), self.PASSWORD)

    def client(self, user: str) -> IMAPClient:
        """A logged-in IMAPClient for `user` (created with the default password if new)."""
        if user.lower() not in self._passwords:
            self.add_user(user)
        c = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=30)
        c.login(user, self.password(user))
        return c

    # -- mail ----------------------------------------------------------------------------
    def append(self, user: str, folder: str, data: bytes, flags: Sequence[str] = (),
               internal_date: dt.datetime | None = None) -> int:
        """APPEND one message (folder created if missing); returns its UID."""
        with self.client(user) as c:
            _ensure_folder(c, folder)
            return _appended_uid(c.append(folder, data, flags=flags, msg_time=internal_date))

    def append_many(self, user: str, folder: str, datas: Iterable[bytes]) -> list[int]:
        """MULTIAPPEND (RFC 3502) in chunks of 100: fast set-up. Returns the folder's UIDs after."""
        datas = list(datas)
        with self.client(user) as c:
            _ensure_folder(c, folder)
            for i in range(0, len(datas), 100):
                c.multiappend(folder, datas[i:i + 100])
            c.select_folder(folder, readonly=True)
            return sorted(c.search("ALL"))

    def uidvalidity(self, user: str, folder: str) -> int:
        with self.client(user) as c:
            return int(c.folder_status(folder, ["UIDVALIDITY"])[b"UIDVALIDITY"])

    def uids(self, user: str, folder: str) -> list[int]:
        with self.client(user) as c:
            if not c.folder_exists(folder):
                return []
            c.select_folder(folder, readonly=True)
            return sorted(c.search("ALL"))

    def flags(self, user: str, folder: str) -> dict[int, frozenset[str]]:
        """UID -> flags (e.g. "\\\\Seen"), read without changing anything; \\Recent (which
        depends on the session) is left out."""
        with self.client(user) as c:
            c.select_folder(folder, readonly=True)
            uids = c.search("ALL")
            data = c.fetch(uids, ["FLAGS"]) if uids else {}
            return {uid: frozenset(f.decode() for f in item[b"FLAGS"]) - {"\\Recent"} for uid, item in data.items()}

    def fetch_all(self, user: str, folder: str) -> list[bytes]:
        with self.client(user) as c:
            c.select_folder(folder, readonly=True)
            uids = sorted(c.search("ALL"))
            data = c.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
            return [data[u][b"BODY[]"] for u in uids]

    def delete_folder(self, user: str, folder: str) -> None:
        """Delete a folder (INBOX cannot be deleted: it is emptied instead)."""
        with self.client(user) as c:
            if folder.upper() == "INBOX":
                c.select_folder("INBOX")
                uids = c.search("ALL")
                if uids:
                    c.delete_messages(uids)
                    c.expunge()
            elif c.folder_exists(folder):
                c.delete_folder(folder)

    def recreate_folder_with_new_uidvalidity(self, user: str, folder: str) -> None:
        """Give the folder a new UIDVALIDITY with the same messages in it (as a server
        migration or a restore does)."""
        messages = self.fetch_all(user, folder)
        old = self.uidvalidity(user, folder)
        if folder.upper() == "INBOX":
            self.delete_folder(user, folder)
            # INBOX cannot be deleted: reset it in place, as a restore from backup would.
            self.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(old + 1), folder)
            self.doveadm("force-resync", "-u", user, folder)
        else:
            self.delete_folder(user, folder)  # a re-created folder gets a fresh UIDVALIDITY
        self.append_many(user, folder, messages)
        if self.uidvalidity(user, folder) == old:
            raise AssertionError(f"UIDVALIDITY of {user}/{folder} did not change")

    def doveadm(self, *args: str) -> str:
        result = subprocess.run(["doveadm", "-c", str(self.conf), *args], capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise DovecotUnavailable(f"doveadm {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout


def _ensure_folder(client: IMAPClient, folder: str) -> None:
    if not client.folder_exists(folder):
        client.create_folder(folder)


def _alive(pid: int) -> bool:
    """True while the process runs (a zombie nobody has reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _appended_uid(resp: bytes | str) -> int:
    text = resp.decode() if isinstance(resp, bytes) else str(resp)
    # "[APPENDUID <uidvalidity> <uid>] Append completed."
    if "APPENDUID" in text:
        return int(text.split("APPENDUID", 1)[1].split("]", 1)[0].split()[1])
    return 0
