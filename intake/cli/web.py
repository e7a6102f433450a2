"""`intake web`: serve the coordinators' web app on its own (no worker)."""

from __future__ import annotations

import click

from intake.cli.context import AppContext


def register(main: click.Group) -> None:
    main.add_command(web)


@click.command()
@click.option("--host", default=None, help="Address to listen on (default: [web] host).")
@click.option("--port", type=int, default=None, help="Port to listen on (default: [web] port).")
@click.pass_obj
def web(app: AppContext, host: str | None, port: int | None) -> None:
    """Serve the coordinators' web app with waitress.

    \b
    Example:
      intake web --host 127.0.0.1 --port 8080
    """
    from intake.web.serve import make_server

    settings = app.settings
    host = host or settings["web.host"]
    port = settings["web.port"] if port is None else port
    server = make_server(settings, host, port, sessions=app.sessions)
    click.echo(f"web: http://{host}:{getattr(server, 'effective_port', port)}/")
    if settings["demo.enabled"]:
        from intake.web.demo_accounts import ensure_demo_accounts

        for line in ensure_demo_accounts(app.sessions, settings):
            click.echo(f"demo account: {line}")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
