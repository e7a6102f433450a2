"""`intake messages list`: every stored message and what was decided about it."""

from __future__ import annotations

import click
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from intake.cli.context import AppContext
from intake.cli.output import emit, format_option

COLUMNS = ("message_id", "mailbox", "kind", "groups", "reason", "from", "subject", "received_at", "application_ids")


def register(main: click.Group) -> None:
    main.add_command(messages)


@click.group()
def messages() -> None:
    """Stored inbound messages."""


@messages.command("list")
@click.option("--kind", help="Only this kind (interest, follow_up, withdrawal, auto_reply, bounce, list, own_mail, spam, unparseable).")
@click.option("--mailbox", help="Only messages first seen in this mailbox.")
@click.option("--limit", type=int, default=0, help="At most this many (newest first); 0 for all.")
@format_option()
@click.pass_obj
def list_messages(app: AppContext, kind: str | None, mailbox: str | None, limit: int, fmt: str) -> None:
    """List stored messages with their kind, groups and the reason for the decision.

    \b
    Example:
      intake messages list --kind interest --format json
    """
    from intake.models import Message

    query = select(Message).options(selectinload(Message.applications)).order_by(Message.received_at, Message.id)
    if kind:
        query = query.where(Message.kind == kind)
    if mailbox:
        query = query.where(Message.mailbox == mailbox)
    with app.sessions() as session:
        rows = list(session.execute(query).scalars())
        if limit:
            rows = rows[-limit:]
        out = [
            {
                "message_id": m.message_id, "mailbox": m.mailbox, "kind": m.kind, "groups": list(m.groups or []),
                "reason": m.reason, "from": m.from_address, "subject": m.subject, "received_at": m.received_at,
                "application_ids": sorted(a.id for a in m.applications),
            }
            for m in rows
        ]
    emit(out, fmt, COLUMNS)
