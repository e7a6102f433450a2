"""`intake retention run`, `intake subject export|erase`, `intake key generate|rotate`."""

from __future__ import annotations

import dataclasses
import os
from collections import defaultdict
from pathlib import Path

import click

from intake.cli.context import AppContext
from intake.cli.output import emit, format_option


def register(main: click.Group) -> None:
    main.add_command(retention)
    main.add_command(subject)
    main.add_command(key)


# -- retention -----------------------------------------------------------------------------
@click.group()
def retention() -> None:
    """Purge raw mail and anonymise closed applications as [retention] says."""


@retention.command("run")
@click.option("--dry-run", is_flag=True, help="Only show what would be purged or anonymised.")
@format_option()
@click.pass_obj
def retention_run(app: AppContext, dry_run: bool, fmt: str) -> None:
    """Apply the retention policy now (the worker also runs it daily at 03:15).

    \b
    Example:
      intake retention run --dry-run
    """
    from intake.retention import apply_retention, plan_retention
    from intake.subject import scrub_storage

    now = app.clock.now()
    with app.sessions.begin() as session:
        if dry_run:
            report = plan_retention(session, app.settings, now)
        else:
            report = apply_retention(session, app.settings, now, actor="cli")
    if not dry_run:
        scrub_storage(app.engine)
    rows = [{"what": k, "count": v} for k, v in dataclasses.asdict(report).items()]
    if fmt == "table":
        click.echo("would purge / anonymise (dry run):" if dry_run else "purged / anonymised:")
    emit(rows, fmt, ("what", "count"))


# -- subject access and erasure ------------------------------------------------------------
@click.group()
def subject() -> None:
    """Subject access (export) and erasure for one email address."""


@subject.command("export")
@click.argument("email")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=Path("subject-export.zip"),
              show_default=True, help="Zip file to write (subject.json plus the raw .eml files).")
@click.pass_obj
def subject_export(app: AppContext, email: str, out: Path) -> None:
    """Export everything stored about EMAIL, across all groups, with who saw it.

    The zip holds personal data: hand it over securely and delete your copy.

    \b
    Example:
      intake subject export jane.smith@example.nhs.uk --out jane.zip
    """
    from intake.crypto import RawCipher
    from intake.subject import build_export, write_export

    cipher = RawCipher.from_settings(app.settings)
    with app.sessions.begin() as session:
        data, files = build_export(session, email, cipher, now=app.clock.now())
        app.audit(session, "subject.export", target_type="subject",
                  details={"applications": [a["id"] for a in data["applications"]], "messages": len(data["messages"]),
                           "outbox": len(data["outbox"]), "quarantine": len(data["quarantine"])})
    write_export(data, files, out)
    click.echo(f"wrote {out}: {len(data['applications'])} applications, {len(data['messages'])} messages, "
               f"{len(data['outbox'])} sent messages, {len(data['quarantine'])} quarantined, "
               f"{len(data['audit'])} audit events, {len(files)} files")


@subject.command("erase")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--delete-from-mailbox", is_flag=True, help="Also delete the person's messages from the IMAP mailboxes.")
@click.pass_obj
def subject_erase(app: AppContext, email: str, yes: bool, delete_from_mailbox: bool) -> None:
    """Erase everything stored about EMAIL; later polls will not import those messages again.

    An audit event records that an erasure happened (counts only, no personal data).

    \b
    Example:
      intake subject erase jane.smith@example.nhs.uk --yes --delete-from-mailbox
    """
    from intake.crypto import RawCipher
    from intake.subject import erase_subject, find_footprint, scrub_storage

    cipher = RawCipher.from_settings(app.settings)
    with app.sessions() as session:
        fp = find_footprint(session, email, cipher)
    click.echo(f"{email}: {len(fp.applications)} applications, {len(fp.messages)} messages, "
               f"{len(fp.outbox)} sent messages, {len(fp.quarantine)} quarantined")
    if not yes:
        click.confirm("Erase all of this permanently?", abort=True)
    with app.sessions.begin() as session:
        report = erase_subject(session, email, actor="cli", cipher=cipher)
    scrubbed = scrub_storage(app.engine)
    click.echo("erased: " + ", ".join(f"{k} {v}" for k, v in report.counts().items()))
    if not scrubbed:
        click.echo("warning: another process kept the database journal open; run "
                   "`intake retention run` later to rewrite the file", err=True)
    if delete_from_mailbox:
        _delete_from_mailboxes(app, report.sources)
    elif report.sources:
        click.echo(f"{len(report.sources)} copies remain in the mailboxes (tombstoned: they will not be imported again)")


def _delete_from_mailboxes(app: AppContext, sources) -> None:  # type: ignore[no-untyped-def]
    from intake.errors import MailboxError
    from intake.imap import ImapMailbox

    by_box: dict[tuple[str, int], list[int]] = defaultdict(list)
    for ref in sources:
        by_box[(ref.mailbox, ref.uidvalidity)].append(ref.uid)
    configs = {m.name: m for m in app.settings.mailboxes}
    for (name, uidvalidity), uids in sorted(by_box.items()):
        cfg = configs.get(name)
        if cfg is None:
            click.echo(f"mailbox {name}: no longer configured; {len(uids)} messages left there", err=True)
            continue
        try:
            with ImapMailbox(cfg, readonly=False, base_dir=app.settings.base_dir) as box:
                if box.uidvalidity != uidvalidity:
                    click.echo(f"mailbox {name}: renumbered since (UIDVALIDITY changed); nothing deleted", err=True)
                    continue
                box.delete(uids)
        except MailboxError as exc:
            click.echo(f"mailbox {name}: could not delete: {exc.reason}", err=True)
            continue
        click.echo(f"mailbox {name}: deleted {len(uids)} messages")


# -- keys ----------------------------------------------------------------------------------
@click.group()
def key() -> None:
    """The encryption key for raw messages and attachments at rest."""


@key.command("generate")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the key to this file (mode 0600) instead of printing it.")
def key_generate(out: Path | None) -> None:
    """Make a new Fernet key.

    \b
    Example:
      intake key generate --out /etc/intake/key
    """
    from intake.crypto import generate_key

    value = generate_key()
    if out is None:
        click.echo(value)
        return
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    click.echo(f"wrote a new key to {out}")


@key.command("rotate")
@click.option("--new-key-env", metavar="VAR", help="Environment variable holding the new key.")
@click.option("--new-key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="File holding the new key.")
@click.pass_obj
def key_rotate(app: AppContext, new_key_env: str | None, new_key_file: Path | None) -> None:
    """Re-encrypt every stored blob with a new key (plaintext blobs get encrypted too).

    The old key is the one configured now. Afterwards point privacy.key_env / key_file at
    the new key; until then the worker can run with "NEW,OLD" in the variable.

    \b
    Example:
      INTAKE_NEW_KEY=$(intake key generate) intake key rotate --new-key-env INTAKE_NEW_KEY
    """
    from intake.crypto import RawCipher, rotate_blobs
    from intake.subject import scrub_storage

    if bool(new_key_env) == bool(new_key_file):
        raise click.UsageError("give exactly one of --new-key-env and --new-key-file")
    if new_key_env:
        if not os.environ.get(new_key_env):
            raise click.UsageError(f"environment variable {new_key_env} is not set")
        new = RawCipher.from_text(os.environ[new_key_env], source=f"environment variable {new_key_env}")
    else:
        assert new_key_file is not None
        new = RawCipher.from_text(new_key_file.read_text(), source=f"key file {new_key_file}")
    combined = new.with_fallback(RawCipher.from_settings(app.settings))
    with app.sessions.begin() as session:
        counts = rotate_blobs(session, combined)
        app.audit(session, "key.rotate", details=counts)
    scrub_storage(app.engine)  # old ciphertext (or plaintext) must not linger in free pages
    click.echo("re-encrypted: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    click.echo("now configure the new key (privacy.key_env / privacy.key_file) and restart intake")
