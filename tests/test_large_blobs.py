"""Large raw messages and attachments are written a slice at a time after their INSERT
(store.BlobWriter: an incremental blob handle on SQLite; on PostgreSQL, slices in a temporary
table joined into the row by one UPDATE). What is read back must be the bytes that arrived,
whatever the size's remainder."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from intake import store
from intake.cli import main
from intake.config import load_settings
from intake.crypto import RawCipher
from intake.db import make_engine, make_sessionmaker
from intake.models import Message
from tests.support.config import MailboxSpec, write_config
from tests.support.mail import make_mail


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted at rest"])
def test_large_messages_and_attachments_read_back_as_they_arrived(tmp_path: Path, dovecot, mail_account,
                                                                  encrypted) -> None:
    rng = random.Random(5)
    slice_size = store._BLOB_SLICE
    # Just over one slice, several slices and a remainder, exactly two slices,
    # and one just under the size that is written this way.
    sizes = [slice_size + 1, 3 * slice_size + 12_345, 2 * slice_size, store.LARGE_BLOB - 1000]
    attachments = [rng.randbytes(size) for size in sizes]
    mails = [make_mail(from_=f"Sam Taylor {i} <sam.{i}@example.nhs.uk>", subject=f"Expression of interest {i}",
                       message_id=f"<blob-{i}@example.nhs.uk>", attachment=(f"portfolio-{i}.pdf", data))
             for i, data in enumerate(attachments)]
    user, password = mail_account()
    dovecot.append_many(user, "INBOX", mails)
    extra: dict = {}
    env: dict[str, str] = {}
    if encrypted:
        from cryptography.fernet import Fernet

        env["INTAKE_TEST_KEY"] = Fernet.generate_key().decode()
        extra = {"privacy": {"key_env": "INTAKE_TEST_KEY"}}
    config = write_config(tmp_path, mailboxes=[MailboxSpec("swig", user, password, port=dovecot.port, group="SWIG")],
                          smtp_port=9, sections={"ack": {"enabled": False}, **extra})
    result = CliRunner().invoke(main, ["--config", str(config), "run", "--once"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output

    settings = load_settings(config, env=env)
    cipher = RawCipher.from_settings(settings)
    with make_sessionmaker(make_engine(settings["database.url"]))() as session:
        stored = {m.message_id.strip("<>"): m for m in session.execute(select(Message)).scalars()}
        assert len(stored) == len(mails)
        for i, (raw, attachment) in enumerate(zip(mails, attachments)):
            message = stored[f"blob-{i}@example.nhs.uk"]
            assert message.raw.encrypted is encrypted
            assert cipher.open(message.raw.data, message.raw.encrypted).replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")
            (row,) = message.attachments
            assert row.size == len(attachment)
            assert cipher.open(row.data, row.encrypted) == attachment
