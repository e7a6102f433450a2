"""`intake auth login` and `intake auth status`: OAuth 2.0 sign-in for the mailboxes."""

from __future__ import annotations

import click

from intake.cli.context import AppContext
from intake.cli.output import emit, format_option
from intake.config import MailboxConfig
from intake.errors import MailboxError, NotFound


def register(main: click.Group) -> None:
    main.add_command(auth)


@click.group()
def auth() -> None:
    """OAuth 2.0 (SASL XOAUTH2) sign-in for mailboxes with auth = "oauth2".

    \b
    Example:
      intake auth status
    """


def _mailbox(app: AppContext, name: str) -> MailboxConfig:
    for mailbox in app.settings.mailboxes:
        if mailbox.name == name:
            return mailbox
    raise NotFound(f"no mailbox named {name!r} in {app.settings.path}")


@auth.command("login")
@click.argument("mailbox")
@click.option("--device-url", default="", help="Device authorisation endpoint (RFC 8628) for oauth_provider = \"generic\".")
@click.pass_obj
def login(app: AppContext, mailbox: str, device_url: str) -> None:
    """Sign a delegated-flow mailbox in once with a device code and save its token cache.

    Open the address shown, enter the code, and sign in as the mailbox's account (for
    NHSmail: the application account). The token cache is then kept fresh by intake.

    \b
    Example:
      intake auth login swig
    """
    from intake.oauth import device_login, token_cache_path

    cfg = _mailbox(app, mailbox)
    user = device_login(cfg, click.echo, base_dir=app.settings.base_dir, device_url=device_url)
    click.echo(f"Signed in as {user}; token cache saved to {token_cache_path(cfg, app.settings.base_dir)}")


@auth.command("status")
@click.option("--refresh", is_flag=True, help="Also obtain a fresh token for each mailbox, to prove sign-in works now.")
@format_option()
@click.pass_obj
def status(app: AppContext, refresh: bool, fmt: str) -> None:
    """Show each OAuth 2.0 mailbox's provider, flow, secret expiry and warnings.

    Exits with status 1 when anything needs attention.

    \b
    Example:
      intake auth status --refresh
    """
    from intake.oauth import TokenProvider, credential_warnings, token_cache_path

    settings, now = app.settings, app.clock.now()
    rows, attention = [], False
    for cfg in settings.mailboxes:
        if cfg.auth != "oauth2":
            continue
        warnings = credential_warnings(cfg, now, base_dir=settings.base_dir)
        token = ""
        if refresh:
            try:
                TokenProvider.for_mailbox(cfg, base_dir=settings.base_dir).token(force_refresh=True)
                token = "ok"
            except MailboxError as exc:
                token = "FAILED"
                warnings.append(exc.reason)
        attention = attention or bool(warnings) or token == "FAILED"
        cache = str(token_cache_path(cfg, settings.base_dir)) if cfg.oauth_flow == "delegated" else ""
        used_by = "imap+smtp" if settings["smtp.auth"] == "oauth2" and settings["smtp.oauth_mailbox"] == cfg.name else "imap"
        rows.append({"mailbox": cfg.name, "used_by": used_by, "provider": cfg.oauth_provider, "flow": cfg.oauth_flow,
                     "secret_expires": cfg.client_secret_expires, "token_cache": cache, "token": token,
                     "warnings": warnings})
    columns = ["mailbox", "used_by", "provider", "flow", "secret_expires", "token_cache", "token"]
    if fmt == "table":  # a table clips long cells: the warnings follow in full
        emit(rows, fmt, columns)
        for row in rows:
            for warning in row["warnings"]:
                click.echo(f"WARNING {warning}")
    else:
        emit(rows, fmt, columns + ["warnings"])
    if attention:
        raise click.exceptions.Exit(1)
