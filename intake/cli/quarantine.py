"""`intake quarantine list|show|retry`: mail intake could not process."""

from __future__ import annotations

import click

from intake.cli.context import AppContext
from intake.cli.output import emit, format_option


def register(main: click.Group) -> None:
    main.add_command(quarantine)


@click.group()
def quarantine() -> None:
    """Messages that could not be processed, kept with their raw bytes and the reason."""


@quarantine.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include messages already retried successfully.")
@format_option()
@click.pass_obj
def list_quarantine(app: AppContext, show_all: bool, fmt: str) -> None:
    """List quarantined messages.

    \b
    Example:
      intake quarantine list --format json
    """
    from sqlalchemy import select

    from intake import quarantine as q
    from intake.models import Quarantine

    with app.sessions() as session:
        rows = list(session.execute(select(Quarantine).order_by(Quarantine.id)).scalars()) if show_all else q.pending(session)
        out = [{"id": r.id, "mailbox": r.mailbox, "uid": r.uid, "reason": r.reason.splitlines()[0] if r.reason else "",
                "attempts": r.attempts, "size": len(r.data), "created_at": r.created_at, "resolved_at": r.resolved_at}
               for r in rows]
    emit(out, fmt, ("id", "mailbox", "uid", "reason", "attempts", "size", "created_at", "resolved_at"))


@quarantine.command("show")
@click.argument("quarantine_id", type=int)
@click.option("--raw", is_flag=True, help="Print the raw message (personal data: handle with care).")
@click.pass_obj
def show(app: AppContext, quarantine_id: int, raw: bool) -> None:
    """Show why a message was quarantined (and, with --raw, its bytes).

    \b
    Example:
      intake quarantine show 3
    """
    from intake import quarantine as q
    from intake.worker import build_ports

    with app.sessions() as session:
        row = q.get(session, quarantine_id)
        click.echo(f"id: {row.id}\nmailbox: {row.mailbox} (UIDVALIDITY {row.uidvalidity}, UID {row.uid})\n"
                   f"size: {len(row.data)} bytes\nattempts: {row.attempts}\ncreated: {row.created_at}\n"
                   f"resolved: {row.resolved_at or '-'}\nreason:\n{row.reason}")
        app.audit(session, "quarantine.view", target_type="quarantine", target_id=row.id, details={"raw": raw})
        session.commit()
        if raw:
            data = q.raw_bytes(row, build_ports(app.settings, app.clock))
            click.echo(data.decode("utf-8", "replace"))


@quarantine.command("retry")
@click.argument("quarantine_ids", type=int, nargs=-1)
@click.option("--all", "retry_all", is_flag=True, help="Retry every unresolved message.")
@click.pass_obj
def retry(app: AppContext, quarantine_ids: tuple[int, ...], retry_all: bool) -> None:
    """Process quarantined messages again (after a fix).

    \b
    Example:
      intake quarantine retry 3 4
      intake quarantine retry --all
    """
    from intake import quarantine as q
    from intake.worker import build_ports

    ports = build_ports(app.settings, app.clock)
    with app.sessions.begin() as session:
        rows = q.pending(session) if retry_all else [q.get(session, i) for i in quarantine_ids]
        ids = [r.id for r in rows]
    for qid in ids:
        try:
            with app.sessions.begin() as session:
                outcome = q.retry(session, app.settings, ports, q.get(session, qid))
                app.audit(session, "quarantine.retry", target_type="quarantine", target_id=qid, details={"kind": outcome.kind})
            click.echo(f"{qid}: processed as {outcome.kind}")
        except Exception as exc:  # report each failure and go on with the rest
            with app.sessions.begin() as session:
                q.get(session, qid).attempts += 1
            click.echo(f"{qid}: still failing: {type(exc).__name__}: {exc}", err=True)
