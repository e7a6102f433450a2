"""`intake queue list`: the applications in each group's queue."""

from __future__ import annotations

import click
from sqlalchemy import func, select

from intake.cli.context import AppContext
from intake.cli.output import emit, format_option

COLUMNS = ("id", "reference", "group", "status", "name", "email", "job_title", "organisation", "received_at", "message_count")


def register(main: click.Group) -> None:
    main.add_command(queue)


@click.group()
def queue() -> None:
    """Application queues (one per group, plus TRIAGE)."""


@queue.command("list")
@click.option("--group", "group_code", help="SWIG | SDIG | SBAMEIG | SLGBTIG | TRIAGE")
@click.option("--status", help="new | contacted | accepted | declined | withdrawn | undeliverable")
@format_option()
@click.pass_obj
def list_queue(app: AppContext, group_code: str | None, status: str | None, fmt: str) -> None:
    """List applications, oldest first.

    \b
    Example:
      intake queue list --group SWIG --status new --format csv
    """
    from intake.models import Application, ApplicationMessage

    counts = (select(ApplicationMessage.application_id, func.count().label("n"))
              .group_by(ApplicationMessage.application_id).subquery())
    query = (select(Application, func.coalesce(counts.c.n, 0))
             .outerjoin(counts, counts.c.application_id == Application.id)
             .where(Application.merged_into_id.is_(None))
             .order_by(Application.received_at, Application.id))
    if group_code:
        query = query.where(Application.group_code == group_code.upper())
    if status:
        query = query.where(Application.status == status)
    with app.sessions() as session:
        out = [
            {"id": a.id, "reference": a.reference, "group": a.group_code, "status": a.status, "name": a.name,
             "email": a.email, "job_title": a.job_title, "organisation": a.organisation, "received_at": a.received_at,
             "message_count": n}
            for a, n in session.execute(query).all()
        ]
        app.audit(session, "queue.export_cli", target_type="queue", target_id=group_code or "ALL",
                  details={"rows": len(out), "format": fmt})
        session.commit()
    emit(out, fmt, COLUMNS)
