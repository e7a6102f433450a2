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


def write_readme(path: str) -> None:
    """Replace the table between the settings-table markers in `path`."""
    import re

    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    pattern = re.compile(r"(<!-- settings-table:start[^>]*-->\n).*?(<!-- settings-table:end -->)", re.DOTALL)
    text = pattern.sub(lambda m: m.group(1) + settings_table() + "\n" + m.group(2), text)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--write"]:
        write_readme(sys.argv[2])
    else:
        print(settings_table())
