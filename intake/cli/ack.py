"""`intake ack preview`, `intake dates list|import`, `intake outbox list|retry|release`."""

from __future__ import annotations

import click
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from intake.cli.context import AppContext
from intake.cli.output import emit, format_option

OUTBOX_COLUMNS = ("id", "to", "subject", "status", "attempts", "in_reply_to", "message_id", "application_ids",
                  "created_at", "sent_at", "last_error")


def register(main: click.Group) -> None:
    main.add_command(ack)
    main.add_command(dates)
    main.add_command(outbox)


@click.group()
def ack() -> None:
    """Acknowledgements sent to applicants."""


@ack.command("preview")
@click.option("--group", "group_code", required=True, help="SWIG | SDIG | SBAMEIG | SLGBTIG | TRIAGE")
@click.option("--name", default="", help="Applicant name to greet (default: a neutral greeting).")
@click.pass_obj
def preview(app: AppContext, group_code: str, name: str) -> None:
    """Print the text part of the acknowledgement an applicant would get now.

    \b
    Example:
      intake ack preview --group SLGBTIG --name "Sam Taylor"
    """
    from intake.ack import Acknowledger, seed_dates
    from intake.domain import TRIAGE

    code = group_code.upper()
    known = [g.code for g in app.settings.groups] + [TRIAGE]
    if code not in known:
        raise click.BadParameter(f"{group_code!r} is not one of {', '.join(known)}", param_hint="--group")
    with app.sessions.begin() as session:
        seed_dates(session, app.settings.groups)
        click.echo(Acknowledger(app.settings, app.clock).preview(code, name, session=session), nl=False)


@click.group()
def dates() -> None:
    """Each group's upcoming dates (what acknowledgements list)."""


@dates.command("list")
@click.option("--group", "group_code", help="Only this group.")
@click.option("--all", "show_all", is_flag=True, help="Include past dates.")
@format_option()
@click.pass_obj
def list_dates(app: AppContext, group_code: str | None, show_all: bool, fmt: str) -> None:
    """Show the dates applicants will be told about (future dates, Europe/London).

    \b
    Example:
      intake dates list --group SWIG --format json
    """
    from intake.ack.dates import format_when, seed_dates
    from intake.clock import LONDON, utc
    from intake.models import GroupDateRow

    now = app.clock.now()
    with app.sessions.begin() as session:
        seed_dates(session, app.settings.groups)
        query = select(GroupDateRow).order_by(GroupDateRow.group_code, GroupDateRow.start)
        if group_code:
            query = query.where(GroupDateRow.group_code == group_code.upper())
        rows = [r for r in session.execute(query).scalars() if show_all or utc(r.start) > now]
        out = [{"group": r.group_code, "start": utc(r.start).astimezone(LONDON).isoformat(),
                "end": utc(r.end).astimezone(LONDON).isoformat(), "when": format_when(utc(r.start), utc(r.end)),
                "where": r.where, "uid": r.uid} for r in rows]
    emit(out, fmt, ("group", "start", "end", "when", "where", "uid"))


@dates.command("import")
@click.pass_obj
def import_cmd(app: AppContext) -> None:
    """Re-read groups.toml's dates into the database (adds new ones, updates changed ones).

    \b
    Example:
      intake dates import
    """
    from intake.ack.dates import import_dates

    with app.sessions.begin() as session:
        changed = import_dates(session, app.settings.groups)
        app.audit(session, "dates.import", details={"changed": changed})
    click.echo(f"{changed} dates added or updated from {app.settings['groups.file']}")


@click.group()
def outbox() -> None:
    """Outgoing mail: acknowledgements, replies and digests, and their delivery."""


@outbox.command("list")
@click.option("--status", help="pending | sending | sent | failed | held | undeliverable")
@format_option()
@click.pass_obj
def list_outbox(app: AppContext, status: str | None, fmt: str) -> None:
    """List outgoing messages and their delivery status.

    \b
    Example:
      intake outbox list --status failed --format json
    """
    from intake.models import Outbox

    query = select(Outbox).options(selectinload(Outbox.applications)).order_by(Outbox.id)
    if status:
        query = query.where(Outbox.status == status)
    with app.sessions() as session:
        out = [{"id": r.id, "to": r.to_address, "subject": r.subject, "status": r.status, "attempts": r.attempts,
                "in_reply_to": r.in_reply_to, "message_id": r.message_id,
                "application_ids": sorted(a.id for a in r.applications), "created_at": r.created_at,
                "sent_at": r.sent_at, "last_error": r.last_error} for r in session.execute(query).scalars()]
    emit(out, fmt, OUTBOX_COLUMNS)


@outbox.command("retry")
@click.argument("ids", type=int, nargs=-1, required=True)
@click.pass_obj
def retry(app: AppContext, ids: tuple[int, ...]) -> None:
    """Queue failed (or interrupted) messages to be sent again.

    \b
    Example:
      intake outbox retry 12 13
    """
    _requeue(app, ids, ("failed",), "outbox.retry")


@outbox.command("release")
@click.argument("ids", type=int, nargs=-1)
@click.option("--all", "release_all", is_flag=True, help="Release every held message.")
@click.pass_obj
def release(app: AppContext, ids: tuple[int, ...], release_all: bool) -> None:
    """Send messages held by the hourly cap.

    \b
    Example:
      intake outbox release --all
    """
    from intake.models import Outbox

    if release_all:
        with app.sessions() as session:
            ids = tuple(session.execute(select(Outbox.id).where(Outbox.status == "held")).scalars())
    _requeue(app, ids, ("held",), "outbox.release")


def _requeue(app: AppContext, ids: tuple[int, ...], from_status: tuple[str, ...], action: str) -> None:
    from intake.models import Outbox

    with app.sessions.begin() as session:
        for row_id in ids:
            row = session.get(Outbox, row_id)
            if row is None or row.status not in from_status:
                click.echo(f"{row_id}: not {' or '.join(from_status)}; left alone", err=True)
                continue
            row.status, row.next_attempt_at, row.last_error = "pending", None, ""  # due at once
            app.audit(session, action, target_type="outbox", target_id=row_id)
            click.echo(f"{row_id}: queued")
