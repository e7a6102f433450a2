"""The queries and writes the pipeline needs, kept out of the pipeline's flow.

Every function takes the caller's Session: the caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import socket
from dataclasses import dataclass
from typing import Iterable, Sequence

from sqlalchemy import ColumnElement, LargeBinary, Update, bindparam, event, func, or_, select, text, true, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from intake.domain import Applicant, SourceRef
from intake.models import (
    Application,
    ApplicationMessage,
    Base,
    IdFloor,
    Message,
    MessageSource,
    MailboxState,
    Outbox,
    Quarantine,
    Tombstone,
)

REFERENCE_PREFIX = "BLFI"


def message_id_key(message_id: str, content_hash: str) -> str:
    """The dedupe key: the normalised Message-ID, or the content hash when there is none."""
    mid = message_id.strip().strip("<>").strip().lower()
    return mid if mid else f"hash:{content_hash}"


def reference_for(application_id: int) -> str:
    return f"{REFERENCE_PREFIX}-{application_id:06d}"


def mailbox_state(session: Session, name: str, folder: str) -> MailboxState:
    state = session.get(MailboxState, name)
    if state is None:
        try:
            with session.begin_nested():
                state = MailboxState(name=name, folder=folder, last_uid=0, consecutive_failures=0, backlog=0)
                session.add(state)
                session.flush()
        except IntegrityError:  # created by another worker just now
            state = session.get(MailboxState, name)
            assert state is not None
    return state


class Lease:
    """Exclusive right to poll one mailbox, held in its mailbox_state row until it expires."""

    def __init__(self, name: str, folder: str, owner: str, seconds: int):
        self.name, self.folder, self.owner, self.seconds = name, folder, owner, seconds

    def acquire(self, session: Session, now: dt.datetime) -> str | None:
        """None when we hold the lease now; else the current holder."""
        mailbox_state(session, self.name, self.folder)
        session.flush()
        if self._take(session, now):
            return None
        holder = session.execute(select(MailboxState.lease_owner).where(MailboxState.name == self.name)).scalar_one()
        if holder and _dead_local_process(holder):
            # A worker on this machine that died (killed, crashed) cannot renew its lease:
            # take it over now rather than waiting for it to expire.
            taken = session.execute(
                update(MailboxState).where(MailboxState.name == self.name, MailboxState.lease_owner == holder)
                .values(lease_owner=self.owner, lease_expires_at=now + dt.timedelta(seconds=self.seconds))
                .execution_options(synchronize_session=False))
            if taken.rowcount == 1:
                return None
        return holder or "another worker"

    def renew(self, session: Session, now: dt.datetime) -> bool:
        return self._take(session, now, renew_only=True)

    def release(self, session: Session) -> None:
        session.execute(update(MailboxState).where(MailboxState.name == self.name, MailboxState.lease_owner == self.owner)
                        .values(lease_owner=None, lease_expires_at=None))

    def _take(self, session: Session, now: dt.datetime, renew_only: bool = False) -> bool:
        # One conditional UPDATE: atomic on SQLite and PostgreSQL alike.
        free = or_(MailboxState.lease_owner.is_(None), MailboxState.lease_owner == self.owner,
                   MailboxState.lease_expires_at < now)
        condition = (MailboxState.lease_owner == self.owner) if renew_only else free
        result = session.execute(
            update(MailboxState).where(MailboxState.name == self.name, condition)
            .values(lease_owner=self.owner, lease_expires_at=now + dt.timedelta(seconds=self.seconds))
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1


def worker_id() -> str:
    """This process as the owner of leases and claims: 'host:pid'."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _dead_local_process(owner: str) -> bool:
    """True for a 'host:pid' owner (a worker_id) on this host whose process no longer exists."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def known_sources(session: Session, refs: Sequence[SourceRef]) -> set[tuple[str, int, int]]:
    """Which of these (mailbox, uidvalidity, uid) were already recorded."""
    if not refs:
        return set()
    mailbox, uidvalidity = refs[0].mailbox, refs[0].uidvalidity
    uids = [r.uid for r in refs]
    rows = session.execute(
        select(MessageSource.uid).where(
            MessageSource.mailbox == mailbox, MessageSource.uidvalidity == uidvalidity, MessageSource.uid.in_(uids)
        )
    ).scalars()
    found = {(mailbox, uidvalidity, uid) for uid in rows}
    quarantined = session.execute(
        select(Quarantine.uid).where(
            Quarantine.mailbox == mailbox, Quarantine.uidvalidity == uidvalidity, Quarantine.uid.in_(uids)
        )
    ).scalars()
    found.update((mailbox, uidvalidity, uid) for uid in quarantined)
    return found


def messages_by_key(session: Session, keys: Iterable[str]) -> dict[str, Message]:
    keys = list(set(keys))
    if not keys:
        return {}
    rows = session.execute(select(Message).where(Message.message_id_key.in_(keys))).scalars()
    return {m.message_id_key: m for m in rows}


def messages_by_hash(session: Session, hashes: Iterable[str]) -> dict[str, Message]:
    hashes = list(set(hashes))
    if not hashes:
        return {}
    rows = session.execute(select(Message).where(Message.content_hash.in_(hashes))).scalars()
    return {m.content_hash: m for m in rows}


def quarantined_hashes(session: Session, hashes: Iterable[str]) -> set[str]:
    hashes = list(set(hashes))
    if not hashes:
        return set()
    return set(session.execute(select(Quarantine.content_hash).where(Quarantine.content_hash.in_(hashes))).scalars())


def tombstoned(session: Session, hashes: Iterable[str], message_id_hashes: Iterable[str]) -> set[str]:
    """Content hashes and message-id hashes among these that were erased."""
    hashes, mids = list(set(hashes)), [h for h in set(message_id_hashes) if h]
    found: set[str] = set()
    if hashes:
        found.update(session.execute(select(Tombstone.content_hash).where(Tombstone.content_hash.in_(hashes))).scalars())
    if mids:
        found.update(session.execute(select(Tombstone.message_id_hash).where(Tombstone.message_id_hash.in_(mids))).scalars())
    return found


def add_source(session: Session, message: Message, ref: SourceRef) -> None:
    source = MessageSource(mailbox=ref.mailbox, uidvalidity=ref.uidvalidity, uid=ref.uid)
    if message.id is None:
        source.message = message  # stored in the same flush: the ORM fills in the key
    else:
        source.message_pk = message.id
    session.add(source)


def known_message_ids(session: Session, ids: Iterable[str]) -> frozenset[str]:
    """Which of these Message-IDs (without <>) we stored or sent."""
    ids = [i.strip().strip("<>").lower() for i in ids if i and i.strip()]
    if not ids:
        return frozenset()
    stored = session.execute(select(Message.message_id_key).where(Message.message_id_key.in_(ids))).scalars()
    sent = session.execute(select(func.lower(Outbox.message_id)).where(func.lower(Outbox.message_id).in_(ids))).scalars()
    return frozenset(set(stored) | set(sent))


def known_references(session: Session, references: Iterable[str]) -> frozenset[str]:
    refs = [r.upper() for r in references]
    if not refs:
        return frozenset()
    return frozenset(session.execute(select(Application.reference).where(Application.reference.in_(refs))).scalars())


def applications_of(session: Session, email: str) -> list[Application]:
    return applications_by_email(session, [email]).get(email.lower(), [])


def applications_for_thread(session: Session, message_ids: Iterable[str], references: Iterable[str]) -> list[Application]:
    """Applications a reply belongs to: via the messages/outbox rows it answers, or a reference token."""
    ids = [i.strip().strip("<>").lower() for i in message_ids if i]
    found: dict[int, Application] = {}
    if ids:
        for app in session.execute(
            select(Application).join(ApplicationMessage).join(Message, Message.id == ApplicationMessage.message_pk)
            .where(Message.message_id_key.in_(ids))
        ).scalars():
            found[app.id] = app
        for row in session.execute(select(Outbox).where(func.lower(Outbox.message_id).in_(ids))).scalars():
            for app in row.applications:
                found[app.id] = app
    refs = [r.upper() for r in references]
    if refs:
        for app in session.execute(select(Application).where(Application.reference.in_(refs))).scalars():
            found[app.id] = app
    return [found[k] for k in sorted(found)]


def applications_by_email(session: Session, emails: Iterable[str]) -> dict[str, list[Application]]:
    """Every application of each address (lower case), in one query; [] for an address with none."""
    found: dict[str, list[Application]] = {e.lower(): [] for e in emails if e}
    for chunk in chunks(sorted(found), 500):
        for app in session.execute(select(Application).where(Application.email.in_(chunk)).order_by(Application.id)).scalars():
            found[app.email].append(app)
    return found


def chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    """Slices of at most `size` items: the values of one `IN (...)` look-up."""
    return (items[i:i + size] for i in range(0, len(items), size))


class KnownApplications:
    """The applications of some addresses, as read earlier in the same transaction and kept
    current as applications are created in it (one look-up per batch, not per message)."""

    def __init__(self, by_email: dict[str, list[Application]] | None = None):
        self.by_email = by_email if by_email is not None else {}

    def of(self, session: Session, email: str) -> list[Application]:
        """The address's applications, read from the database the first time it is asked."""
        email = email.lower()
        if email not in self.by_email:
            self.by_email[email] = applications_of(session, email)
        return self.by_email[email]

    def find(self, email: str, group_code: str) -> Application | None | bool:
        """The application, None when there is none, False when this does not know."""
        apps = self.by_email.get(email.lower())
        if apps is None:
            return False
        return next((a for a in apps if a.group_code == group_code), None)

    def add(self, app: Application) -> None:
        apps = self.by_email.get(app.email)
        if apps is not None:
            apps.append(app)


def get_or_create_application(session: Session, applicant: Applicant, group_code: str, received_at: dt.datetime,
                              route_reason: str, *, known: KnownApplications | None = None,
                              guard: bool = True) -> tuple[Application, bool]:
    """The person's application to this group, created when missing (one per person per group).

    `known` saves the look-up when it was read in this transaction (applications created
    since then in this session are added to it); a row another worker inserted meanwhile
    is still found, through the unique constraint. Without `guard` (no savepoint) that
    race raises IntegrityError instead, for a caller that retries with the guard."""
    email = applicant.email.lower()
    existing = known.find(email, group_code) if known is not None else False
    if existing is False:
        existing = session.execute(
            select(Application).where(Application.email == email, Application.group_code == group_code)
        ).scalar_one_or_none()
    if existing is not None:
        _fill_blanks(existing, applicant)
        return existing, False
    app = Application(
        group_code=group_code, status="new", email=email, name=applicant.name, job_title=applicant.job_title,
        organisation=applicant.organisation, received_at=received_at, route_reason=route_reason,
    )
    if not guard:
        # Its id (and so its reference, which the acknowledgement quotes) handed out now:
        # the row is written with the rest of the batch, not flushed on its own.
        app.id = next_application_id(session)
        session.add(app)
    else:
        if not _is_postgres(session):
            app.id = next_application_id(session)  # not SQLite's own choice: see there
        try:
            with session.begin_nested():
                session.add(app)
                session.flush()
        except IntegrityError:
            # Another worker created it between our SELECT and INSERT: use theirs.
            existing = session.execute(
                select(Application).where(Application.email == email, Application.group_code == group_code)
            ).scalar_one()
            return existing, False
    app.reference = reference_for(app.id)
    if known is not None:
        known.add(app)
    return app, True


def next_application_id(session: Session) -> int:
    """An application id for a row not yet inserted.

    PostgreSQL: the column's own sequence (unique across workers, never reused). SQLite: one
    more than the largest in the table or ever erased from it (the id floor), then counted
    on in memory for the rest of the transaction. SQLite alone would reuse an erased newest
    id, and with it a reference its applicant may still quote in a subject line, which
    would file their mail with someone else's application. The largest id is read before
    the batch takes the write lock: if another writer inserts an application meanwhile, the
    batch's INSERT fails on the primary key and the pipeline stores the batch again
    carefully, holding the lock from the start."""
    # Without an autoflush: the batch's rows are written together at its end.
    with session.no_autoflush:
        if _is_postgres(session):
            return int(session.execute(text("SELECT nextval(pg_get_serial_sequence('applications', 'id'))")).scalar_one())
        last = session.info.get(_LAST_ID_KEY)
        if last is None:
            largest = session.execute(select(func.max(Application.id))).scalar() or 0
            floor = session.get(IdFloor, APPLICATION_ID_FLOOR)
            last = max(largest, floor.value if floor is not None else 0)
    session.info[_LAST_ID_KEY] = last + 1
    return last + 1


_LAST_ID_KEY = "intake.last_application_id"
APPLICATION_ID_FLOOR = "applications"


def keep_application_ids_retired(session: Session, ids: Iterable[int]) -> None:
    """Before applications are deleted (erasure): their ids are never handed out again."""
    largest = max(ids, default=0)
    floor = session.get(IdFloor, APPLICATION_ID_FLOOR)
    if floor is None:
        session.add(IdFloor(name=APPLICATION_ID_FLOOR, value=largest))
    elif floor.value < largest:
        floor.value = largest


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _fill_blanks(app: Application, applicant: Applicant) -> None:
    """A later message may know more (a signature the first lacked); never overwrite edits."""
    for field in ("name", "job_title", "organisation"):
        if not getattr(app, field) and getattr(applicant, field):
            setattr(app, field, getattr(applicant, field))


def link(session: Session, app: Application, message: Message, *, new_message: bool = False) -> None:
    """Join an application to a message once. A message stored in this transaction cannot be
    linked yet (`new_message`): the look-up, a query per link, is skipped, and the link is
    written when either row is (the ORM fills in the keys at the flush)."""
    if new_message or session.get(ApplicationMessage, (app.id, message.id)) is None:
        session.add(ApplicationMessage(application=app, message=message))


# -- large blobs --------------------------------------------------------------------------

LARGE_BLOB = 1024 * 1024
_BLOB_SLICE = 1024 * 1024


class BlobWriter:
    """Large BLOB values written a slice at a time after the INSERT, in the same transaction
    (a rolled-back savepoint takes them with it). Small values are bound as usual.

    SQLite: a bound 14 MB value is copied by SQLite (SQLITE_TRANSIENT) and the copy stays
    bound to the cached INSERT statement until its next use, so it is still there while the
    message's attachments are inserted: the copies add up to the worker's peak memory. A
    large value is inserted as zeroblob(n) and written through an incremental blob handle,
    a megabyte at a time.

    PostgreSQL: psycopg2 sends a bound `bytea` as escaped text inside the statement, about
    twice its size, and builds that text more than once: a 14 MB message took the worker from
    150 to 245 MB. A large value is inserted empty, sent in slices to a temporary table and
    joined into its row on the server."""

    def __init__(self, session: Session):
        self.session = session
        self.pending: list[tuple[object, str, bytes]] = []
        self.dialect = session.get_bind().dialect.name

    @property
    def sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def value(self, row: object, table: str, data: bytes) -> bytes | ColumnElement[bytes]:
        """What to assign to the row's `data` now."""
        if len(data) < LARGE_BLOB or self.dialect not in ("sqlite", "postgresql"):
            return data
        self.pending.append((row, table, data))
        # A SQL expression, not a value: after the flush the ORM reads the column again if
        # anyone asks for it, instead of keeping a placeholder.
        return func.zeroblob(len(data)) if self.sqlite else func.decode("", "hex")

    def write(self) -> None:
        """After the flush that inserted the rows: fill in the large values."""
        if not self.pending:
            return
        if self.sqlite:
            self._write_sqlite()
        else:
            self._append_postgresql()
        self.pending.clear()

    def _write_sqlite(self) -> None:
        driver = self.session.connection().connection.driver_connection
        for row, table, data in self.pending:
            view = memoryview(data)
            with driver.blobopen(table, "data", _rowid(row)) as blob:  # type: ignore[union-attr]
                for start in range(0, len(view), _BLOB_SLICE):
                    blob.write(view[start:start + _BLOB_SLICE])

    def _append_postgresql(self) -> None:
        # The slices go to a temporary table (not WAL-logged, emptied at commit) and are
        # joined into the row by one UPDATE: appending them to the row one by one
        # (`data || slice`) rewrote the growing value each time, which cost a backlog with
        # 10 MB attachments about a tenth of its speed.
        connection = self.session.connection()
        connection.execute(_PARTS_TABLE)
        for row, table, data in self.pending:
            for seq, start in enumerate(range(0, len(data), _BLOB_SLICE)):  # one slice in memory at a time
                connection.execute(_PARTS_INSERT, {"b_seq": seq, "b_slice": data[start:start + _BLOB_SLICE]})
            connection.execute(_joined_statement(table), {"b_key": _rowid(row)})
            connection.execute(_PARTS_CLEAR)


_PARTS_TABLE = text("CREATE TEMPORARY TABLE IF NOT EXISTS intake_blob_parts (seq integer, data bytea) "
                    "ON COMMIT DELETE ROWS")
_PARTS_INSERT = text("INSERT INTO intake_blob_parts (seq, data) VALUES (:b_seq, :b_slice)").bindparams(
    bindparam("b_slice", type_=LargeBinary))
_PARTS_CLEAR = text("DELETE FROM intake_blob_parts")


@functools.cache
def _joined_statement(table_name: str) -> Update:
    """UPDATE table SET data = (the parts, in order) WHERE <primary key> = :b_key"""
    table = Base.metadata.tables[table_name]
    (key,) = table.primary_key.columns
    joined = text("(SELECT string_agg(data, ''::bytea ORDER BY seq) FROM intake_blob_parts)")
    return update(table).where(key == bindparam("b_key")).values(data=joined)


def expire_after_flush(session: Session, rows: Sequence[object], attributes: list[str]) -> None:
    """Drop these attributes of these rows from memory once a flush has written them (read
    again from the database if anyone asks)."""
    waiting = session.info.get(_EXPIRE_KEY)
    if waiting is None:
        waiting = session.info[_EXPIRE_KEY] = []
        event.listen(session, "after_flush_postexec", _expire_written)
    waiting.extend((row, attributes) for row in rows)


_EXPIRE_KEY = "intake.expire_after_flush"


def _expire_written(session: Session, _context: object) -> None:
    waiting = session.info.get(_EXPIRE_KEY, [])
    still_pending = []
    for row, attributes in waiting:
        state = sa_inspect(row)
        if state.persistent:
            session.expire(row, attributes)
        elif state.pending:
            still_pending.append((row, attributes))
        # else: rolled back with a savepoint; nothing to free
    waiting[:] = still_pending


def _rowid(row: object) -> int:
    """The INTEGER PRIMARY KEY (SQLite's rowid) of a flushed raw message or attachment row."""
    from intake.models import AttachmentRow, RawMessageRow

    if isinstance(row, RawMessageRow):
        return row.message_pk
    if isinstance(row, AttachmentRow):
        return row.id
    raise TypeError(f"no rowid for {type(row).__name__}")


def needing_attention(codes: Iterable[str]) -> tuple[ColumnElement[bool], ...]:
    """WHERE clauses for live (not merged) applications of these groups whose applicant
    wrote back and nobody has acted since: one rule for the dashboard and the digest
    (served by the index ix_applications_attention)."""
    return (Application.needs_attention == true(), Application.group_code.in_(tuple(codes)),
            Application.merged_into_id.is_(None))
