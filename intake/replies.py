"""Coordinators' personal replies: drafted from templates/replies/, sent through the outbox.

A reply goes from the group's address, inside the application's thread (In-Reply-To and
References of the last message), with the application reference in the subject. It carries
no Auto-Submitted header: it is a person writing. Sending moves the application on
(e.g. an invitation marks it `contacted`) and is audited.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Sequence

import jinja2
from sqlalchemy import select
from sqlalchemy.orm import Session

from intake.addresses import clean_header
from intake.audit import record
from intake.clock import LONDON, utc
from intake.config import Settings
from intake.errors import IntakeError, NotFound
from intake.models import Application, GroupDateRow, Outbox

TEMPLATES = ("invitation", "more_information", "accepted", "declined", "general")
# What sending each template says about the application.
STATUS_AFTER = {"invitation": "contacted", "more_information": "contacted", "accepted": "accepted",
                "declined": "declined", "general": "contacted"}
LOOP_HEADER = "X-Intake-Loop"
TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


class ReplyError(IntakeError):
    """A reply cannot be drafted or sent as asked."""


@dataclass(frozen=True)
class SessionDate:
    uid: str
    start: dt.datetime
    end: dt.datetime
    where: str

    @property
    def day(self) -> str:
        return self.start.astimezone(LONDON).strftime("%A %-d %B %Y")

    @property
    def when(self) -> str:
        s, e = self.start.astimezone(LONDON), self.end.astimezone(LONDON)
        return f"{self.day}, {s:%H:%M} to {e:%H:%M}"


@dataclass(frozen=True)
class Draft:
    template: str
    subject: str
    body: str
    session: SessionDate | None = None


class ReplyComposer:
    """Renders reply drafts and turns a coordinator's final text into an outbox row."""

    def __init__(self, settings: Settings, templates_dir: Path | None = None):
        self.settings = settings
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir or TEMPLATES_DIR)),
                                      undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)

    def draft(self, session: Session, app: Application, template: str, *, coordinator_name: str,
              now: dt.datetime, session_start: dt.datetime | None = None) -> Draft:
        if template not in TEMPLATES:
            raise ReplyError(f"unknown template {template!r}; choose one of {', '.join(TEMPLATES)}")
        if app.email is None:
            raise ReplyError("this application has been anonymised; there is no one to write to")
        group = self._group(app.group_code)
        upcoming = upcoming_sessions(session, app.group_code, now)
        chosen = None
        if session_start is not None:
            chosen = next((d for d in upcoming if d.start == utc(session_start)), None)
            if chosen is None:
                raise ReplyError(f"{session_start.isoformat()} is not an upcoming {group.display} date")
        text = self.env.get_template(f"replies/{template}.txt").render(
            applicant_name=app.name, group=group, coordinator_name=coordinator_name, session=chosen, upcoming=upcoming)
        first, _, body = text.partition("\n")
        subject = clean_header(first.removeprefix("Subject:"))
        return Draft(template=template, subject=subject, body=body.lstrip("\n"), session=chosen)

    def enqueue(self, session: Session, app: Application, draft: Draft, *, actor: str, now: dt.datetime,
                not_before: dt.datetime | None = None, ip: str = "", send_key: str = "") -> Outbox:
        """Add the reply to the outbox, move the application on and audit it (caller's transaction)."""
        if app.email is None:
            raise ReplyError("this application has been anonymised; there is no one to write to")
        group = self._group(app.group_code)
        sender = formataddr((f"{group.display} - Building Leadership for Inclusion", self._group_address(app.group_code)))
        subject = draft.subject if (app.reference or "") in draft.subject else f"{draft.subject} [{app.reference}]"
        in_reply_to, references = thread_headers(app)
        message_id = reply_message_id(self.settings, send_key or uuid.uuid4().hex)
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = formataddr((clean_header(app.name), app.email))
        msg["Subject"] = clean_header(subject)
        msg["Date"] = format_datetime(now)
        msg["Message-ID"] = f"<{message_id}>"
        if in_reply_to:
            msg["In-Reply-To"] = f"<{in_reply_to}>"
            msg["References"] = " ".join(f"<{r}>" for r in references)
        msg[LOOP_HEADER] = self.settings.message_id_domain
        msg.set_content(draft.body)
        if draft.template == "invitation" and draft.session is not None:
            msg.add_attachment(invitation_ics(draft.session, group, organiser=self._group_address(app.group_code),
                                              attendee=app.email, name=app.name, now=now),
                               maintype="text", subtype="calendar", filename="invitation.ics",
                               params={"method": "REQUEST"})
        row = Outbox(kind="reply", to_address=app.email, from_address=sender, subject=msg["Subject"],
                     message_id=message_id, in_reply_to=in_reply_to, group_codes=[app.group_code], body=msg.as_bytes(),
                     status="pending", attempts=0, next_attempt_at=not_before or now, created_at=now, created_by=actor)
        row.applications.append(app)
        session.add(row)
        old_status = app.status
        new_status = status_after(old_status, draft.template)
        if old_status != new_status:
            app.status = new_status
            app.status_changed_at = now
        app.needs_attention = False
        session.flush()
        record(session, actor=actor, action="reply.send", target_type="application", target_id=app.id,
               group_code=app.group_code, ip=ip, details={"template": draft.template, "outbox_id": row.id,
                                                   "status": [old_status, app.status]})
        return row

    def _group(self, code: str):  # type: ignore[no-untyped-def]
        try:
            return self.settings.group(code)
        except KeyError:
            raise ReplyError(f"application is in {code}; move it to a group before replying") from None

    def _group_address(self, code: str) -> str:
        group = self._group(code)
        return group.addresses[0] if group.addresses else _email_of(self.settings["smtp.from_address"])


def send_bulk(composer: ReplyComposer, session: Session, apps: Sequence[Application], template: str, *,
              coordinator_name: str, actor: str, now: dt.datetime, spacing_seconds: int = 2,
              session_start: dt.datetime | None = None, ip: str = "", send_key: str = "") -> list[Outbox]:
    """One message per application, each its own thread; spaced out through the outbox.

    With a `send_key`, each message's id derives from it and the application, so the same
    bulk send posted twice queues nothing the second time (see `already_sent`)."""
    rows = []
    for i, app in enumerate(apps):
        key = f"{send_key}-{app.id}" if send_key else ""
        if key and already_sent(session, composer.settings, key):
            continue
        draft = composer.draft(session, app, template, coordinator_name=coordinator_name, now=now, session_start=session_start)
        rows.append(composer.enqueue(session, app, draft, actor=actor, now=now,
                                     not_before=now + dt.timedelta(seconds=i * spacing_seconds), ip=ip, send_key=key))
    return rows


def new_send_key() -> str:
    """A one-time key a reply form carries, so a double click or a re-post sends once."""
    return uuid.uuid4().hex


def valid_send_key(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


def reply_message_id(settings: Settings, send_key: str) -> str:
    return f"reply-{send_key}@{settings.message_id_domain}"


def already_sent(session: Session, settings: Settings, send_key: str) -> bool:
    """Whether a reply with this key is already in the outbox (sent or not)."""
    return session.scalar(select(Outbox.id).where(Outbox.message_id == reply_message_id(settings, send_key))) is not None


def status_after(current: str, template: str) -> str:
    """The status an application has once this template is sent: an open application moves
    on; a closed one is only moved by an outcome (accepted / declined)."""
    target = STATUS_AFTER[template]
    return target if current in ("new", "contacted") or target in ("accepted", "declined") else current


def upcoming_sessions(session: Session, group_code: str, now: dt.datetime) -> list[SessionDate]:
    rows = session.execute(select(GroupDateRow).where(GroupDateRow.group_code == group_code).order_by(GroupDateRow.start)).scalars()
    return [SessionDate(r.uid, utc(r.start), utc(r.end), r.where) for r in rows if utc(r.start) > now]


def thread_headers(app: Application) -> tuple[str, list[str]]:
    """(In-Reply-To, References) answering the latest message of the application's thread."""
    latest = None
    for m in app.messages:
        if m.message_id and (latest is None or utc(m.received_at) >= utc(latest.received_at)):
            latest = m
    if latest is None:
        return "", []
    mid = latest.message_id.strip("<>")
    refs = [r.strip("<>") for r in (latest.references or []) if r][-10:]
    return mid, refs + [mid]


def invitation_ics(when: SessionDate, group, *, organiser: str, attendee: str, name: str, now: dt.datetime) -> bytes:  # type: ignore[no-untyped-def]
    """An iTIP REQUEST for one session (RFC 5546), in Europe/London time."""
    import icalendar

    cal = icalendar.Calendar()
    cal.add("prodid", "-//intake//Building Leadership for Inclusion//EN")
    cal.add("version", "2.0")
    cal.add("method", "REQUEST")
    event = icalendar.Event()
    event.add("uid", when.uid)
    event.add("dtstamp", now)
    event.add("dtstart", when.start.astimezone(LONDON))
    event.add("dtend", when.end.astimezone(LONDON))
    event.add("summary", f"{group.display}: {group.name}")
    event.add("location", when.where)
    event.add("sequence", 0)
    event.add("organizer", icalendar.vCalAddress(f"mailto:{organiser}"))
    guest = icalendar.vCalAddress(f"mailto:{attendee}")
    guest.params["cn"] = icalendar.vText(name or attendee)
    guest.params["role"] = icalendar.vText("REQ-PARTICIPANT")
    guest.params["rsvp"] = icalendar.vText("TRUE")
    event.add("attendee", guest)
    cal.add_component(event)
    cal.add_missing_timezones()
    return cal.to_ical()


def get_application(session: Session, application_id: int) -> Application:
    app = session.get(Application, application_id)
    if app is None:
        raise NotFound(f"no application {application_id}")
    return app


def _email_of(value: str) -> str:
    from intake.addresses import parse_address

    parsed = parse_address(value)
    return parsed.email if parsed else value
