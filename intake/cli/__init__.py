"""The `intake` command line: one module per command group, registered below.

Every command takes the shared `--config` (default config/intake.toml or $INTAKE_CONFIG);
settings are loaded once, lazily, and a ConfigError becomes exit code 2 with the message.
"""

from __future__ import annotations

import importlib
import sys

import click

from intake.cli.context import AppContext
from intake.errors import ConfigError, IntakeError

# Each module defines `def register(main: click.Group) -> None`.
COMMAND_MODULES = (
    "intake.cli.core",
    "intake.cli.messages",
    "intake.cli.queue",
    "intake.cli.ack",
    "intake.cli.users",
    "intake.cli.web",
    "intake.cli.privacy",
    "intake.cli.quarantine",
    "intake.cli.replies",
    "intake.cli.auth",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, envvar="INTAKE_CONFIG",
              help="Path to intake.toml (default: config/intake.toml).")
@click.version_option(package_name="intake")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """intake: turns the group mailboxes into routed, acknowledged application queues.

    \b
    Example:
      intake --config config/intake.toml run --once
    """
    ctx.obj = AppContext(config_path)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command group not written yet
                continue
            raise
        module.register(main)


_register_all()


def run() -> None:
    try:
        main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        click.echo(f"Configuration error: {exc}", err=True)
        sys.exit(2)
    except IntakeError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
