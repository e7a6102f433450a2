"""Generates the settings reference for README.md: `python -m intake.docs`."""

from __future__ import annotations

from intake.config import MAILBOX_SETTINGS, SETTINGS, Setting


def _row(name: str, s: Setting) -> str:
    default = "(required)" if s.default is None else repr(s.default).replace("'", '"')
    env = f"INTAKE_{s.section}_{s.key}".upper() if s.section != "mailboxes" else f"INTAKE_MAILBOXES_<NAME>_{s.key.upper()}"
    return f"| `{name}` | {s.type.__name__} | `{default}` | `{env}` | {s.help} |"


def settings_table() -> str:
    lines = ["| setting | type | default | environment | meaning |", "|---|---|---|---|---|"]
    lines += [_row(s.name, s) for s in SETTINGS]
    lines += [_row(f"mailboxes.{s.key}", s) for s in MAILBOX_SETTINGS]
    return "\n".join(lines)


if __name__ == "__main__":
    print(settings_table())
