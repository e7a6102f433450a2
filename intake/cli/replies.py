"""`intake reply send`: a coordinator's templated reply to one application, from the CLI."""

from __future__ import annotations

import datetime as dt

import click

from intake.cli.context import AppContext


def register(main: click.Group) -> None:
    main.add_command(reply)


@click.group()
def reply() -> None:
    """Personal replies to applicants, sent through the outbox from the group's address."""


@reply.command("send")
@click.argument("application_id", type=int)
@click.option("--template", "template", required=True,
              type=click.Choice(["invitation", "more_information", "accepted", "declined", "general"]))
@click.option("--date", "date", help="For an invitation: the session's start, ISO format, Europe/London (e.g. 2027-01-12T10:00).")
@click.option("--as", "coordinator", default="The programme team", show_default=True, help="Name to sign with.")
@click.option("--yes", is_flag=True, help="Send without asking for confirmation.")
@click.pass_obj
def send(app: AppContext, application_id: int, template: str, date: str | None, coordinator: str, yes: bool) -> None:
    """Draft a reply from a template, show it, and queue it for sending.

    \b
    Example:
      intake reply send 12 --template invitation --date 2027-01-12T10:00 --yes
    """
    from intake.clock import LONDON
    from intake.replies import ReplyComposer, get_application

    start = None
    if date:
        start = dt.datetime.fromisoformat(date)
        start = start.replace(tzinfo=LONDON) if start.tzinfo is None else start
    composer = ReplyComposer(app.settings)
    now = app.clock.now()
    with app.sessions.begin() as session:
        application = get_application(session, application_id)
        draft = composer.draft(session, application, template, coordinator_name=coordinator, now=now, session_start=start)
        click.echo(f"To: {application.name} <{application.email}>\nSubject: {draft.subject}\n\n{draft.body}")
        if not yes and not click.confirm("Send this reply?", default=False):
            raise click.Abort()
        row = composer.enqueue(session, application, draft, actor="cli", now=now)
        click.echo(f"queued as outbox {row.id}; application {application.reference} is now {application.status}")
