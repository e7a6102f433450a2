"""Acknowledgements: decide, compose and queue the reply to an expression of interest.

`Acknowledger` is built once at start-up (one Jinja2 Environment, StrictUndefined, HTML
autoescaped) and called by the pipeline inside its transaction: it never sends, it adds one
outbox row (see intake/delivery.py for sending). Our replies carry RFC 3834 headers and a
loop header that intake's own classifier recognises if a reply ever comes back.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import jinja2
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from intake.ack.compose import LOOP_HEADER, CalendarFile, Section, ack_subject, build_message, make_section, withdrawal_subject
from intake.ack.dates import UpcomingDate, format_when, import_dates, seed_dates, stable_uid, upcoming_dates
from intake.ack.ics import dates_calendar
from intake.ack.policy import AckDecision, AckFacts, decide
from intake.addresses import clean_header, parse_address
from intake.clock import Clock, utc
from intake.config import MailboxConfig, Settings
from intake.domain import TRIAGE, Address, InboundMessage, Kind, Verdict
from intake.errors import ConfigError
from intake.groups import Group
from intake.models import Application, Message, Outbox
from intake.store import chunks

__all__ = ["Acknowledger", "LOOP_HEADER", "seed_dates", "import_dates", "upcoming_dates", "format_when", "UpcomingDate"]

log = logging.getLogger(__name__)
TEMPLATES_DIR = Path(__file__).resolve().parent.parent.parent / "templates"
TEMPLATE_CHECK_SECONDS = 1.0  # how often edited template files are looked for (see Acknowledger._templates)
TRIAGE_GROUP = Group(code=TRIAGE, display="Your message", name="Your message to Building Leadership for Inclusion")


# One reply in the window: kind, group codes, created at, and the row when this transaction
# added it (None when read from the database).
_Sent = tuple[str, list[str], dt.datetime, "Outbox | None"]


@dataclass(frozen=True)
class RecentReplies:
    acked_groups: frozenset[str]
    withdrawal_confirmed: bool



class Acknowledger:
    def __init__(self, settings: Settings, clock: Clock, templates_dir: Path | None = None):
        self.settings = settings
        self.clock = clock
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates_dir or TEMPLATES_DIR)),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(["html"]),
            keep_trailing_newline=True,
            auto_reload=False,  # see _templates
        )
        self._templates_checked = time.monotonic()
        _memoise_wordwrap(self.env)
        self.privacy_notice = _read_notice(settings)
        self.sender = settings["smtp.from_address"]
        self.message_id_domain = settings.message_id_domain  # worked out from the settings: once
        parsed = parse_address(self.sender)
        self.contact = settings["ack.contact_address"] or (parsed.email if parsed else self.sender)

    # -- the pipeline's calls ------------------------------------------------------------
    def enqueue(self, session: Session, *, inbound: InboundMessage, message: Message, verdict: Verdict,
                applications: list[Application], mailbox: MailboxConfig,
                mailbox_first_connected_at: dt.datetime | None) -> Outbox | None:
        now = self.clock.now()
        recipient = inbound.reply_to or inbound.from_
        to = recipient.email if recipient else ""
        groups = frozenset(a.group_code for a in applications)
        recent = self._recent(session, to, now)
        facts = AckFacts(
            kind=verdict.kind, recipient=to, own_addresses=self.settings.own_addresses,
            enabled=self.settings["ack.enabled"], mailbox_enabled=mailbox.ack,
            received_at=utc(message.received_at),
            first_connected_at=utc(mailbox_first_connected_at) if mailbox_first_connected_at else None,
            max_age_hours=self.settings["ack.max_age_hours"],
            groups_already_acked=recent.acked_groups,
            groups=groups, sent_last_hour=self._sent_last_hour(session, now),
            max_per_hour=self.settings["ack.max_per_hour"],
            withdrawal_confirmed_recently=recent.withdrawal_confirmed,
        )
        decision = decide(facts)
        message.acknowledge = decision.send
        message.ack_skip_reason = "" if decision.send and not decision.hold else decision.reason
        if not decision.send:
            return None
        if verdict.kind is Kind.INTEREST and not applications:
            message.acknowledge, message.ack_skip_reason = False, "no application to acknowledge"
            return None
        assert recipient is not None  # decide() refuses when there is no valid address
        chosen = [a for a in applications if a.group_code in decision.groups] or applications
        row = self._compose(session, inbound, message, recipient, chosen, verdict.kind, decision, now)
        session.add(row)
        self._remember(session, row)
        if not decision.hold:
            session.info["intake.acks_last_hour"] = facts.sent_last_hour + 1
        if decision.hold:
            log.error("acknowledgement to %s held: %s", _mask(to), decision.reason)
        return row

    def record_bounce(self, session: Session, inbound: InboundMessage) -> list[Outbox]:
        """A bounce quoting our Message-ID marks that reply and its applications undeliverable."""
        text = "\n".join([inbound.text, inbound.html] + [a.data[:200_000].decode("utf-8", "replace")
                                                         for a in inbound.attachments if a.content_type.startswith(("message/", "text/"))])
        domain = re.escape(self.message_id_domain)
        ids = set(m.lower() for m in re.findall(rf"<?((?:ack|reply|digest)-[0-9a-f]+@{domain})>?", text, re.IGNORECASE))
        if not ids:
            return []
        rows = list(session.execute(select(Outbox).where(func.lower(Outbox.message_id).in_(ids))).scalars())
        for row in rows:
            row.status = "undeliverable"
            row.last_error = f"bounced: {inbound.subject[:200]}"
            for app in row.applications:
                app.status = "undeliverable"
                app.status_changed_at = self.clock.now()
        return rows

    def preview(self, group_code: str, name: str = "", session: Session | None = None) -> str:
        """The text part an applicant to this group would get now (dates from the database
        when a session is given, else from groups.toml)."""
        group = self._group(group_code)
        now = self.clock.now()
        if session is not None:
            dates = tuple(upcoming_dates(session, group_code, now))
        else:
            dates = tuple(UpcomingDate(stable_uid(group.code, d), utc(d.start), utc(d.end), d.where)
                          for d in sorted(group.dates, key=lambda d: d.start) if utc(d.start) > now)
        section = make_section(group_code, group, "BLFI-000000", dates)
        text, _ = self._render_ack(name, [section], subject=ack_subject([section]))
        return text

    # -- composing -----------------------------------------------------------------------
    def _render_ack(self, name: str, sections: Sequence[Section], *, subject: str) -> tuple[str, str]:
        ctx: dict[str, Any] = dict(applicant_name=clean_header(name), sections=sections, contact_address=self.contact,
                                   all_groups=self.settings.groups,
                                   privacy_notice=self.privacy_notice, subject=subject)
        env = self._templates()
        return env.get_template("ack/base.txt").render(ctx), env.get_template("ack/base.html").render(ctx)

    def _render_withdrawal(self, name: str, applications: Sequence[Application]) -> tuple[str, str, str]:
        groups = [self._group(a.group_code).display for a in applications if a.group_code != TRIAGE]
        refs = [a.reference for a in applications if a.reference]
        subject = withdrawal_subject(refs)
        ctx = dict(applicant_name=clean_header(name), groups=groups, references=refs, subject=subject,
                   contact_address=self.contact, erase=self.settings["retention.erase_on_withdrawal"])
        env = self._templates()
        return subject, env.get_template("ack/withdrawal.txt").render(ctx), env.get_template("ack/withdrawal.html").render(ctx)

    def _templates(self) -> jinja2.Environment:
        """The environment, its compiled templates dropped when a template file changed.

        Looked at most once every TEMPLATE_CHECK_SECONDS: Jinja's own check (auto_reload)
        reads the modification time of every template an acknowledgement uses, five files,
        at every render. An edited template is still used from the next reply on."""
        now = time.monotonic()
        if now - self._templates_checked >= TEMPLATE_CHECK_SECONDS:
            self._templates_checked = now
            cache = self.env.cache
            if cache is not None and not all(template.is_up_to_date for template in cache.values()):
                cache.clear()
        return self.env

    def _compose(self, session: Session, inbound: InboundMessage, message: Message, recipient: Address,
                 applications: Sequence[Application], kind: Kind, decision: AckDecision, now: dt.datetime) -> Outbox:
        name = applications[0].name if applications and applications[0].name else recipient.name
        calendar = None
        if kind is Kind.WITHDRAWAL:
            subject, text, html = self._render_withdrawal(name, applications)
        else:
            sections = [make_section(a.group_code, self._group(a.group_code), a.reference or "",
                                     self._upcoming(session, a.group_code, now) if a.group_code != TRIAGE else [])
                        for a in sorted(applications, key=self._group_order)]
            subject = ack_subject(sections)
            text, html = self._render_ack(name, sections, subject=subject)
            entries = [(s.group, d) for s in sections for d in s.dates]
            if entries:
                calendar = CalendarFile(dates_calendar(entries, now=now))
        domain = self.message_id_domain
        message_id = f"ack-{uuid.uuid4().hex}@{domain}"
        data = build_message(sender=self.sender, to_name=recipient.name, to_email=recipient.email, subject=subject,
                             text=text, html=html, message_id=message_id, in_reply_to=inbound.message_id,
                             references=inbound.references, now=now, loop_value=domain,
                             calendar=calendar)
        row = Outbox(kind="ack" if kind is Kind.INTEREST else "withdrawal", to_address=recipient.email,
                     from_address=self.sender, subject=clean_header(subject), message_id=message_id,
                     in_reply_to=clean_header(inbound.message_id), group_codes=sorted(a.group_code for a in applications),
                     body=data, status="held" if decision.hold else "pending", attempts=0, next_attempt_at=now,
                     created_at=now, last_error=decision.reason if decision.hold else "", created_by="system",
                     source_message=message)
        row.applications.extend(applications)
        return row

    def _upcoming(self, session: Session, group_code: str, now: dt.datetime) -> list[UpcomingDate]:
        """Upcoming dates, read once per transaction (a poll batch) per group."""
        cache = session.info.setdefault("intake.upcoming_dates", {})
        if group_code not in cache:
            with session.no_autoflush:  # see _window
                cache[group_code] = upcoming_dates(session, group_code, now)
        return cache[group_code]

    def _group_order(self, app: Application) -> int:
        codes = [g.code for g in self.settings.groups]
        return codes.index(app.group_code) if app.group_code in codes else len(codes)

    def _group(self, code: str) -> Group:
        if code == TRIAGE:
            return TRIAGE_GROUP
        try:
            return self.settings.group(code)
        except KeyError:
            return Group(code=code, display=code, name=code)

    # -- facts from the outbox -----------------------------------------------------------
    def prepare(self, session: Session, recipients: Iterable[str]) -> None:
        """The addresses this transaction (a poll batch) is likely to reply to: their recent
        replies are then read in one query, at the first enqueue."""
        wanted = session.info.setdefault("intake.recent_wanted", set())
        wanted.update(r.lower() for r in recipients if r)

    def _recent(self, session: Session, to: str, now: dt.datetime) -> "RecentReplies":
        """What we sent this recipient within the window."""
        if not to:
            return RecentReplies(frozenset(), False)
        since = now - dt.timedelta(hours=self.settings["ack.window_hours"])
        rows = [(kind, codes) for kind, codes, created, row in self._window(session, since, to.lower())
                if created >= since and (row is None or row in session)]  # a row rolled back with its message is gone
        acked = frozenset(code for kind, codes in rows if kind == "ack" for code in (codes or []))
        return RecentReplies(acked, any(kind == "withdrawal" for kind, _ in rows))

    def _window(self, session: Session, since: dt.datetime, to: str) -> list[_Sent]:
        # The replies to the batch's recipients (see prepare) are read in one query at the
        # first miss, through the index on lower(to_address), and kept current by _remember.
        # Reading the whole window once per batch instead made a backlog quadratic: each
        # batch read every acknowledgement of the run so far.
        # Without an autoflush: the batch's rows are written together at its end (on SQLite,
        # taking the write lock only then). An address is read before this transaction adds
        # a row to it (enqueue and _remember both come here first), so no row is counted twice.
        cache: dict[str, list[_Sent]] = session.info.setdefault("intake.recent_replies", {})
        if to in cache:
            return cache[to]
        wanted = session.info.get("intake.recent_wanted", set())
        load = sorted((wanted - cache.keys()) | {to})
        for address in load:
            cache[address] = []
        with session.no_autoflush:
            for chunk in chunks(load, 500):
                for address, kind, codes, created in session.execute(select(
                        func.lower(Outbox.to_address), Outbox.kind, Outbox.group_codes, Outbox.created_at).where(
                        func.lower(Outbox.to_address).in_(chunk), Outbox.created_at >= since,
                        Outbox.kind.in_(("ack", "withdrawal")), Outbox.status != "failed")):
                    cache[address].append((kind, codes, utc(created), None))
        return cache[to]

    def _remember(self, session: Session, row: Outbox) -> None:
        if row.kind in ("ack", "withdrawal"):
            since = utc(row.created_at) - dt.timedelta(hours=self.settings["ack.window_hours"])
            self._window(session, since, row.to_address.lower()).append(
                (row.kind, list(row.group_codes), utc(row.created_at), row))

    def _sent_last_hour(self, session: Session, now: dt.datetime) -> int:
        # Counted once per transaction (a poll batch), then kept current in memory: the
        # pipeline adds every acknowledgement of the batch through this object.
        cached = session.info.get("intake.acks_last_hour")
        if cached is not None:
            return cached
        with session.no_autoflush:  # read before this transaction adds any outbox row: see _window
            session.info["intake.acks_last_hour"] = count = self._count_last_hour(session, now)
        return count

    def _count_last_hour(self, session: Session, now: dt.datetime) -> int:
        since = now - dt.timedelta(hours=1)
        return session.execute(select(func.count()).select_from(Outbox).where(
            Outbox.kind.in_(("ack", "withdrawal")), Outbox.created_at >= since,
            or_(Outbox.status == "pending", Outbox.status == "sending", Outbox.status == "sent"))).scalar_one()


def _memoise_wordwrap(env: jinja2.Environment) -> None:
    """The templates wrap the same paragraphs (the greeting, each group's text, the privacy
    notice) in every acknowledgement; textwrap costs about as much as the rest of the
    rendering, so a plain-text paragraph is wrapped once. Markup (HTML templates) and
    anything else go to Jinja's own filter every time."""
    original = env.filters["wordwrap"]

    @functools.lru_cache(maxsize=1024)
    def wrapped(text: str, width: int, break_long_words: bool, wrapstring: str | None, break_on_hyphens: bool) -> str:
        return original(env, text, width, break_long_words, wrapstring, break_on_hyphens)

    @jinja2.pass_environment
    def wordwrap(environment: jinja2.Environment, s: Any, width: int = 79, break_long_words: bool = True,
                 wrapstring: str | None = None, break_on_hyphens: bool = True) -> str:
        if type(s) is not str or environment is not env:
            return original(environment, s, width, break_long_words, wrapstring, break_on_hyphens)
        return wrapped(s, width, break_long_words, wrapstring, break_on_hyphens)

    env.filters["wordwrap"] = wordwrap


def _read_notice(settings: Settings) -> str:
    path = settings.resolve(settings["privacy.notice_file"])
    try:
        return " ".join(path.read_text(encoding="utf-8").split())
    except FileNotFoundError:
        raise ConfigError(f"privacy notice file {path} not found", file=str(settings.path), key="privacy.notice_file") from None


def _mask(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"
