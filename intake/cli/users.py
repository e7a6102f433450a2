"""`intake user add | list | disable | set-password`: coordinator and admin accounts."""

from __future__ import annotations

import sys

import click

from intake.cli.context import AppContext
from intake.cli.output import emit, format_option

COLUMNS = ("email", "role", "groups", "active", "created_at", "last_login_at")


def register(main: click.Group) -> None:
    main.add_command(user)


@click.group()
def user() -> None:
    """Accounts that can sign in to the web app."""


def _read_password(from_stdin: bool) -> str:
    # Never prompt when standard input is not a terminal: scripts pipe the password in.
    if from_stdin or not sys.stdin.isatty():
        # One line; the newline a shell pipe adds is not part of the password.
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.UsageError("no password on standard input")
        return password
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@user.command("add")
@click.argument("email")
@click.option("--role", type=click.Choice(["coordinator", "admin"]), required=True)
@click.option("--group", "groups", multiple=True, help="Group code this coordinator works (repeatable).")
@click.option("--name", default="", help="Display name.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (one line).")
@click.pass_obj
def add(app: AppContext, email: str, role: str, groups: tuple[str, ...], name: str, password_stdin: bool) -> None:
    """Create an account.

    \b
    Example:
      echo 'long-secret-pass' | intake user add ann@example.org --role coordinator --group SWIG --password-stdin
    """
    from intake.db import transaction
    from intake.users import UserError, add_user

    password = _read_password(password_stdin)
    try:
        with transaction(app.sessions) as session:
            created = add_user(session, email, password, role=role, groups=groups, name=name,
                               known_groups=[g.code for g in app.settings.groups])
            app.audit(session, "user.add", target_type="user", target_id=created.email,
                      details={"role": role, "groups": list(created.group_codes)})
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"added {created.email} ({role}{': ' + ', '.join(created.group_codes) if created.group_codes else ''})")


@user.command("list")
@format_option()
@click.pass_obj
def list_(app: AppContext, fmt: str) -> None:
    """List accounts.

    \b
    Example:
      intake user list --format json
    """
    from intake.users import list_users

    with app.sessions() as session:
        rows = [{"email": u.email, "role": u.role, "groups": u.group_codes, "active": u.active,
                 "created_at": u.created_at, "last_login_at": u.last_login_at} for u in list_users(session)]
    emit(rows, fmt, COLUMNS)


@user.command("disable")
@click.argument("email")
@click.pass_obj
def disable(app: AppContext, email: str) -> None:
    """Stop an account from signing in (its audit history stays).

    \b
    Example:
      intake user disable ann@example.org
    """
    from intake.db import transaction
    from intake.users import disable_user

    with transaction(app.sessions) as session:
        disabled = disable_user(session, email)
        app.audit(session, "user.disable", target_type="user", target_id=disabled.email)
    click.echo(f"disabled {disabled.email}")


@user.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (one line).")
@click.pass_obj
def set_password_cmd(app: AppContext, email: str, password_stdin: bool) -> None:
    """Set a new password.

    \b
    Example:
      echo 'another-long-pass' | intake user set-password ann@example.org --password-stdin
    """
    from intake.db import transaction
    from intake.users import UserError, set_password

    password = _read_password(password_stdin)
    try:
        with transaction(app.sessions) as session:
            changed = set_password(session, email, password)
            app.audit(session, "user.set_password", target_type="user", target_id=changed.email)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"password changed for {changed.email}")
