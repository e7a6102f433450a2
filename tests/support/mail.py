"""Build test emails as bytes (deterministic, realistic enough for pipeline tests)."""

from __future__ import annotations

import datetime as dt
import itertools
from email.message import EmailMessage
from email.utils import format_datetime

_counter = itertools.count(1)


def make_mail(
    *,
    from_: str = "Jane Smith <jane.smith@example.nhs.uk>",
    to: str = "swig@example.org",
    subject: str = "Expression of interest",
    body: str = "Hello,\n\nI would like to take part in the group.\n\nKind regards,\nJane Smith\nDirector of Nursing\nLeeds Teaching Hospitals NHS Trust\n",
    message_id: str | None = None,
    date: dt.datetime | None = None,
    headers: dict[str, str] | None = None,
    cc: str | None = None,
    html: str | None = None,
    attachment: tuple[str, bytes] | None = None,
) -> bytes:
    """`html`: an HTML alternative to the text; `attachment`: (file name, bytes), a PDF."""
    msg = EmailMessage()
    msg["From"] = from_
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or dt.datetime.now(dt.timezone.utc))
    msg["Message-ID"] = message_id or f"<test-{next(_counter)}-{id(msg)}@example.nhs.uk>"
    for key, value in (headers or {}).items():
        msg[key] = value
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    if attachment is not None:
        filename, data = attachment
        msg.add_attachment(data, maintype="application", subtype="pdf", filename=filename)
    return msg.as_bytes()
