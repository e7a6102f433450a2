"""A private Dovecot that accepts only OAuth 2.0 bearer tokens (SASL XOAUTH2 / OAUTHBEARER)
for IMAP and for SMTP submission, checking each token at an introspection URL.

    oauth = OAuthServer().start()
    sink = SmtpServer().start()               # where submitted mail is relayed to
    server = OAuthDovecot(oauth.introspection_url, oauth.ca_file, relay_port=sink.port).start()
    server.deliver("a@example.org", b"Subject: hi\\r\\n\\r\\nbody\\r\\n")   # via doveadm, no login
    server.port               # IMAP (plain text on loopback: no TLS needed to test SASL)
    server.submission_port    # SMTP submission (Dovecot's submission service)

Dovecot 2.3's `oauth2` passdb posts `token=...` to the introspection URL over TLS (verified
against the test CA) and logs the user in when the answer has `active: true` and a
`username` equal to the login name. Nothing else can log in: there is no password passdb.
Needs the Debian packages dovecot-imapd and dovecot-submissiond.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.servers.dovecot import Dovecot, DovecotUnavailable, free_port

CONFIG = """\
instance_name = {name}
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
info_log_path = {dir}/dovecot.log
protocols = imap submission
listen = 127.0.0.1
ssl = no
hostname = localhost
disable_plaintext_auth = no
auth_mechanisms = xoauth2 oauthbearer
auth_failure_delay = 0
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
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {dir}/dovecot-oauth2.conf.ext
}}
# allow_all_users: doveadm can deliver test mail without a passdb lookup (there is none
# that could answer one without a token).
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={dir}/mail/%Lu allow_all_users=yes
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
    port = 0
  }}
}}
service submission-login {{
  chroot =
  inet_listener submission {{
    address = 127.0.0.1
    port = {submission_port}
  }}
}}
submission_relay_host = 127.0.0.1
submission_relay_port = {relay_port}
submission_relay_trusted = yes
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""

OAUTH2_CONF = """\
introspection_mode = post
introspection_url = {introspection_url}
tls_ca_cert_file = {ca_file}
username_attribute = username
active_attribute = active
active_value = true
"""


class OAuthDovecot(Dovecot):
    """Dovecot with an oauth2 passdb; `start()`, `cleanup()` as for `Dovecot`."""

    def __init__(self, introspection_url: str, ca_file: str, *, relay_port: int) -> None:
        if not shutil.which("dovecot"):
            raise DovecotUnavailable("dovecot is not installed: run .ci/system-deps.sh")
        super().__init__(ssl=False)
        self.introspection_url = introspection_url
        self.introspection_ca_file = ca_file
        self.relay_port = relay_port
        self.submission_port = free_port()

    def start(self) -> "OAuthDovecot":
        super().start()
        self._wait_listening(self.submission_port)
        return self

    def _write_config(self) -> None:
        if not _has_submission():
            raise DovecotUnavailable("Dovecot's submission service is missing: "
                                     "apt-get install dovecot-submissiond (see .ci/system-deps.sh)")
        for sub in ("run", "state", "mail"):
            (self.dir / sub).mkdir(exist_ok=True)
        shutil.chown(self.dir / "mail", self.uid, self.gid)
        # Dovecot's auth process runs unprivileged: give it its own readable copy of the CA.
        ca_copy = self.dir / "introspection-ca.crt"
        shutil.copyfile(self.introspection_ca_file, ca_copy)
        ca_copy.chmod(0o644)
        (self.dir / "dovecot-oauth2.conf.ext").write_text(OAUTH2_CONF.format(
            introspection_url=self.introspection_url, ca_file=ca_copy))
        self.conf.write_text(CONFIG.format(
            name=self.dir.name, dir=self.dir, uid=self.uid, gid=self.gid, port=self.port,
            submission_port=self.submission_port, relay_port=self.relay_port))

    def deliver(self, user: str, data: bytes, folder: str = "INBOX") -> None:
        """Put one message into `user`'s folder without logging in (doveadm save)."""
        result = subprocess.run(["doveadm", "-c", str(self.conf), "save", "-u", user, "-m", folder],
                                input=data, capture_output=True, timeout=30)
        if result.returncode != 0:
            raise DovecotUnavailable(f"doveadm save failed: {result.stderr.decode(errors='replace')}")

    def add_user(self, email: str, password: str = "") -> str:
        raise NotImplementedError("this Dovecot has no passwords: users are whoever a valid token names")


def _has_submission() -> bool:
    return any(Path(p).exists() for p in ("/usr/lib/dovecot/submission", "/usr/libexec/dovecot/submission"))
