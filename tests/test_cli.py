"""The command line: every command documents itself with an example; check and quarantine work."""

from __future__ import annotations

import json

import click
from click.testing import CliRunner

from intake.cli import main
from tests.support.config import MailboxSpec, write_config
from tests.support.mail import make_mail


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + (name,))
        else:
            yield prefix + (name,), command


def test_every_command_has_help_with_an_example() -> None:
    missing = []
    for path, command in _commands(main):
        result = CliRunner().invoke(main, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        if "Example" not in result.output:
            missing.append(" ".join(path))
    assert not missing, f"commands without an example in --help: {missing}"


def test_readme_lists_every_command_group() -> None:
    from tests.support.config import REPO

    readme = (REPO / "README.md").read_text()
    groups = sorted({path[0] for path, _ in _commands(main)})
    assert [g for g in groups if f"intake {g}" not in readme] == []


def test_check_passes_when_everything_is_reachable(tmp_path, dovecot, mail_account, smtp_server) -> None:
    user, _ = mail_account("chk")
    config = write_config(tmp_path, mailboxes=[MailboxSpec("swig", user, "pw", port=dovecot.port, group="SWIG")],
                          smtp_port=smtp_server.port)
    result = CliRunner().invoke(main, ["--config", str(config), "check"])
    assert result.exit_code == 0, result.output
    assert "mailbox   OK    swig" in result.output and "smtp      OK" in result.output


def test_check_fails_when_smtp_is_down(tmp_path, dovecot, mail_account) -> None:
    user, _ = mail_account("chk2")
    config = write_config(tmp_path, mailboxes=[MailboxSpec("swig", user, "pw", port=dovecot.port, group="SWIG")],
                          smtp_port=9)  # nothing listens on the discard port
    result = CliRunner().invoke(main, ["--config", str(config), "check"])
    assert result.exit_code == 1 and "smtp      FAIL" in result.output


def test_config_error_exit_code_and_message(tmp_path) -> None:
    bad = tmp_path / "intake.toml"
    bad.write_text("[worker]\npoll_interval = -5\n")
    result = CliRunner().invoke(main, ["--config", str(bad), "run", "--once"], standalone_mode=True)
    # `intake` (the console script) maps ConfigError to exit 2 with the message; through
    # click's own runner we see the exception carrying the file and key.
    assert result.exception is not None
    assert "worker.poll_interval" in str(result.exception) and str(bad) in str(result.exception)


def test_quarantine_list_show_and_retry(tmp_path, dovecot, mail_account, monkeypatch) -> None:
    import intake.pipeline as pipeline

    user, _ = mail_account("quar")
    config = write_config(tmp_path, mailboxes=[MailboxSpec("swig", user, "pw", port=dovecot.port, group="SWIG")],
                          sections={"ack": {"enabled": False}})
    dovecot.append(user, "INBOX", make_mail(from_="Q <q@example.nhs.uk>", to=user, subject="trips a bug"))
    real = pipeline.route

    def broken(msg, groups, **kw):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug in routing")

    monkeypatch.setattr(pipeline, "route", broken)
    run = lambda *a: CliRunner().invoke(main, ["--config", str(config), *a], catch_exceptions=False)  # noqa: E731
    assert "quarantined 1" in run("run", "--once").output
    listed = json.loads(run("quarantine", "list", "--format", "json").output)
    assert len(listed) == 1 and "a bug in routing" in listed[0]["reason"]
    shown = run("quarantine", "show", str(listed[0]["id"])).output
    assert "a bug in routing" in shown and "trips a bug" not in shown  # no content without --raw
    monkeypatch.setattr(pipeline, "route", real)  # "the fix"
    retried = run("quarantine", "retry", "--all")
    assert "processed as interest" in retried.output
    assert json.loads(run("quarantine", "list", "--format", "json").output) == []
    messages = json.loads(run("messages", "list", "--format", "json").output)
    assert [m["from"] for m in messages] == ["q@example.nhs.uk"] and messages[0]["groups"] == ["SWIG"]
