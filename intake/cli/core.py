"""Core commands: `db upgrade`, `check`, `run`."""

from __future__ import annotations

import signal
import sys
import threading

import click

from intake.cli.context import AppContext


def register(main: click.Group) -> None:
    main.add_command(db)
    main.add_command(check)
    main.add_command(run)


@click.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(app: AppContext) -> None:
    """Create or migrate the schema to the latest version.

    \b
    Example:
      intake db upgrade
    """
    from intake.db import upgrade

    upgrade(app.settings["database.url"])
    click.echo(f"database at {app.settings['database.url']} is up to date")


@click.command()
@click.pass_obj
def check(app: AppContext) -> None:
    """Validate the config and connect to every mailbox, SMTP and the database.

    Exit code 1 when anything is failing.

    \b
    Example:
      intake check
    """
    from intake.health import run_checks

    ok = run_checks(app, echo=click.echo)
    sys.exit(0 if ok else 1)


@click.command()
@click.option("--once", is_flag=True, help="Run every job once (poll each mailbox, drain the outbox), print a summary, exit.")
@click.option("--no-web", is_flag=True, help="Do not start the web app.")
@click.option("--no-worker", is_flag=True, help="Do not start the worker (web app only).")
@click.pass_obj
def run(app: AppContext, once: bool, no_web: bool, no_worker: bool) -> None:
    """Start the service: the mailbox pollers, outbox delivery and the web app.

    With [demo] enabled, a local demo IMAP server and SMTP sink start first.

    \b
    Examples:
      intake run
      intake run --once
      intake run --no-web
    """
    from intake import logs
    from intake.worker import build_ports, prepare, run_forever, run_once, wait_for

    settings = app.settings
    logs.configure(settings["logging.level"], settings["logging.format"])
    demo = _start_demo(settings)
    try:
        sessions = app.sessions
        prepare(settings, sessions)
        ports = build_ports(settings, app.clock)
        if once:
            report = run_once(settings, sessions, ports)
            for poll in report.polls:
                click.echo(poll.summary())
            if report.delivery is not None:
                beside = f" ({report.delivered_beside} sent by the delivery process)" if report.delivered_beside is not None else ""
                click.echo(f"outbox: {report.delivery}{beside}")
            return
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        web = None if no_web else _start_web(app)
        try:
            if no_worker:
                wait_for(stop)
            else:
                run_forever(settings, sessions, ports, stop)
        finally:
            if web is not None:
                web.close()
    finally:
        if demo is not None:
            demo.stop()


def _start_demo(settings):  # type: ignore[no-untyped-def]
    if not settings["demo.enabled"]:
        return None
    from intake.demo import start_demo

    demo = start_demo(settings)
    click.echo(f"demo: IMAP server on 127.0.0.1:{demo.imap_port}, SMTP sink on 127.0.0.1:{demo.smtp_port} "
               f"(received mail is written to {settings['demo.smtp_sink_dir']}/)")
    return demo


def _start_web(app: AppContext):  # type: ignore[no-untyped-def]
    """The web app in a background thread; returns a handle with close()."""
    from intake.web.serve import start_in_thread

    settings = app.settings
    handle = start_in_thread(settings, settings["web.host"], settings["web.port"])
    click.echo(f"web: http://{settings['web.host']}:{settings['web.port']}/")
    if settings["demo.enabled"]:
        from intake.web.demo_accounts import ensure_demo_accounts

        for line in ensure_demo_accounts(app.sessions, settings):
            click.echo(f"demo account: {line}")
    return handle
