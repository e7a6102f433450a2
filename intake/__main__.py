"""Allows ``python -m intake``."""

from intake.cli import run

run()
