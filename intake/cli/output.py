"""Shared output for list commands: --format table|json|csv."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any, Callable, Sequence

import click

FORMATS = ("table", "json", "csv")


def format_option(default: str = "table") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--format", "fmt", type=click.Choice(FORMATS), default=default, show_default=True,
                        help="Output format.")


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def emit(rows: Sequence[dict[str, Any]], fmt: str, columns: Sequence[str]) -> None:
    """Print rows in the chosen format; `columns` fixes order (and table/csv columns)."""
    if fmt == "json":
        click.echo(json.dumps([{c: _plain(r.get(c)) for c in columns} for r in rows], indent=2, ensure_ascii=False))
        return
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_cell(r.get(c)) for c in columns])
        click.echo(buf.getvalue(), nl=False)
        return
    table = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [min(40, max([len(c)] + [len(row[i]) for row in table])) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in table:
        click.echo("  ".join(v[:w].ljust(w) for v, w in zip(row, widths)))
    if not table:
        click.echo("(none)")


def _cell(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ";".join(str(v) for v in value)
    return str(value)
