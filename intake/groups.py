"""The groups applicants can join, as configured in groups.toml."""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intake.errors import ConfigError

KNOWN_CODES = ("SWIG", "SDIG", "SBAMEIG", "SLGBTIG")


@dataclass(frozen=True)
class GroupDate:
    start: dt.datetime  # aware, Europe/London
    end: dt.datetime
    where: str = ""


@dataclass(frozen=True)
class Group:
    code: str
    display: str
    name: str
    addresses: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    dates: tuple[GroupDate, ...] = ()
    coordinators: tuple[str, ...] = ()
    contact_address: str = ""


def load_groups(path: Path) -> tuple[Group, ...]:
    """Read and validate groups.toml."""
    from intake.config import london_date

    file = str(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("groups file not found", file=file) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=file) from None
    entries = data.get("groups")
    if not isinstance(entries, list) or not entries:
        raise ConfigError("needs at least one [[groups]] table", file=file, key="groups")
    groups: list[Group] = []
    for i, entry in enumerate(entries):
        label = f"groups[{i}]"
        code = _str(entry, "code", file, label, required=True)
        if code not in KNOWN_CODES:
            raise ConfigError(f"code must be one of {', '.join(KNOWN_CODES)}, got {code!r}", file=file, key=f"{label}.code")
        if any(g.code == code for g in groups):
            raise ConfigError(f"duplicate group code {code!r}", file=file, key=f"{label}.code")
        dates = []
        for j, d in enumerate(entry.get("dates", [])):
            dl = f"{label}.dates[{j}]"
            if not isinstance(d, dict):
                raise ConfigError("must be a table", file=file, key=dl)
            start = london_date(d.get("start"), file, f"{dl}.start")
            end = london_date(d.get("end", d.get("start")), file, f"{dl}.end")
            if end < start:
                raise ConfigError("end is before start", file=file, key=f"{dl}.end")
            dates.append(GroupDate(start=start, end=end, where=str(d.get("where", ""))))
        groups.append(
            Group(
                code=code,
                display=_str(entry, "display", file, label) or code,
                name=_str(entry, "name", file, label, required=True),
                addresses=tuple(a.lower() for a in _list(entry, "addresses", file, label)),
                keywords=tuple(k.lower() for k in _list(entry, "keywords", file, label)),
                dates=tuple(dates),
                coordinators=tuple(a.lower() for a in _list(entry, "coordinators", file, label)),
                contact_address=_str(entry, "contact_address", file, label),
            )
        )
    return tuple(groups)


def _str(entry: dict[str, Any], key: str, file: str, label: str, required: bool = False) -> str:
    value = entry.get(key, "")
    if not isinstance(value, str) or (required and not value):
        raise ConfigError("must be a non-empty string" if required else "must be a string", file=file, key=f"{label}.{key}")
    return value


def _list(entry: dict[str, Any], key: str, file: str, label: str) -> list[str]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError("must be a list of strings", file=file, key=f"{label}.{key}")
    return value
