"""One poll of one mailbox, end to end: fetch, dedupe, parse, classify, route, store, ack.

The only module that sees both the pure core and the I/O edges; it receives its ports
(the mailbox opener, the acknowledger, the cipher, the clock) as arguments.

Guarantees (see README "Reliability"):
- a batch of messages, their applications, their outbox rows and the mailbox checkpoint
  commit in ONE transaction; only after that commit is the server touched (move_to);
- re-polling is harmless: a message already recorded at (mailbox, UIDVALIDITY, UID), or
  with a known Message-ID / content hash, or tombstoned by an erasure, is not processed again;
- one message that breaks our code is quarantined with its raw bytes and the reason, inside
  a savepoint, and the rest of the batch goes on.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import datetime as dt
import functools
import hashlib
import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Iterable, Iterator, Mapping, Protocol, Sequence

from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from intake import store
from intake.applicant import extract_applicant
from intake.classify import ClassifyContext, classify, find_references
from intake.clock import Clock, utc
from intake.config import MailboxConfig, Settings
from intake.domain import TRIAGE, InboundMessage, Kind, RawMessage, Route, Verdict
from intake.errors import MailboxError, MailboxUnavailable
from intake.models import Application, AttachmentRow, MailboxState, Message, Quarantine, RawMessageRow
from intake.parse_process import ParseAhead
from intake.parsing import ParseResult, QuickHeaders, Unparseable, parse_or_reason, quick_headers, quick_message_id
from intake.routing import route

log = logging.getLogger(__name__)


class MailboxPort(Protocol):
    """What the pipeline needs from an open mailbox (intake.imap.ImapMailbox provides it)."""

    uidvalidity: int

    def uids_after(self, last_uid: int) -> list[int]: ...
    def sizes(self, uids: Sequence[int]) -> dict[int, int]: ...
    def fetch(self, uids: Sequence[int], *, batch_size: int = 200) -> Iterator[RawMessage]: ...
    def move(self, uids: Sequence[int], folder: str) -> None: ...


class AckPort(Protocol):
    def enqueue(self, session: Session, *, inbound: InboundMessage, message: Message, verdict: Verdict,
                applications: list[Application], mailbox: MailboxConfig,
                mailbox_first_connected_at: dt.datetime | None) -> object | None: ...
    def record_bounce(self, session: Session, inbound: InboundMessage) -> list[object]: ...
    def prepare(self, session: Session, recipients: Iterable[str]) -> None: ...


class CipherPort(Protocol):
    def seal(self, data: bytes) -> tuple[bytes, bool]: ...


class PlainCipher:
    """Stores bytes as they are (used when no encryption key is configured)."""

    enabled = False

    def seal(self, data: bytes) -> tuple[bytes, bool]:
        return data, False


@dataclass
class Ports:
    open_mailbox: Callable[[MailboxConfig], ContextManager[MailboxPort]]
    acknowledger: AckPort | None
    cipher: CipherPort
    clock: Clock


@dataclass
class PollReport:
    mailbox: str
    fetched: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    acks_queued: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    skipped: str | None = None

    def add(self, batch: "PollReport") -> None:
        """A committed batch's counts added to the poll's."""
        self.fetched += batch.fetched
        self.stored += batch.stored
        self.duplicates += batch.duplicates
        self.quarantined += batch.quarantined
        self.acks_queued += batch.acks_queued
        for kind, count in batch.kinds.items():
            self.kinds[kind] = self.kinds.get(kind, 0) + count

    def summary(self) -> str:
        if self.skipped:
            return f"{self.mailbox}: skipped ({self.skipped})"
        if self.error:
            return f"{self.mailbox}: FAILED: {self.error}"
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.kinds.items())) or "nothing new"
        return (f"{self.mailbox}: fetched {self.fetched}, stored {self.stored}, duplicates {self.duplicates}, "
                f"quarantined {self.quarantined}, acks queued {self.acks_queued} ({kinds})")


def poll_mailbox(sessions: sessionmaker[Session], settings: Settings, mailbox: MailboxConfig, ports: Ports,
                 *, worker: str = "local", on_batch: Callable[[PollReport], None] | None = None) -> PollReport:
    """Poll one mailbox once. A mailbox failure is recorded and reported, never raised.

    `on_batch`, if given, is told what each committed batch counted (it must not raise).

    Several workers may share one database: a lease on the mailbox's state row (renewed
    every batch, expiring so a dead worker's mailbox is taken over) lets one poll at a time.
    """
    report = PollReport(mailbox=mailbox.name)
    now = ports.clock.now()
    started = time.monotonic()
    lease = store.Lease(mailbox.name, mailbox.folder, worker, settings["worker.lease_seconds"])
    try:
        with sessions.begin() as session:
            holder = lease.acquire(session, now)
    except SQLAlchemyError as exc:
        report.error = f"database error: {type(exc).__name__}: {exc}".splitlines()[0]
        log.error("mailbox %s not polled: %s", mailbox.name, report.error)
        return report
    if holder is not None:
        report.error = None
        report.skipped = f"being polled by {holder}"
        return report
    try:
        with ports.open_mailbox(mailbox) as box:
            _drain(sessions, settings, mailbox, box, ports, report, lease, on_batch)
    except (MailboxError, SQLAlchemyError) as exc:
        # Either way nothing past the last committed batch counts as done: the checkpoint
        # only ever moves inside the transaction that stored the batch.
        reason = exc.reason if isinstance(exc, MailboxError) else f"database error: {type(exc).__name__}: {exc}".splitlines()[0]
        report.error = reason
        log.error("mailbox %s failed: %s", mailbox.name, reason, extra={"mailbox": mailbox.name})
        _record_failure(sessions, mailbox, now, reason, time.monotonic() - started)
        return report
    finally:
        with contextlib.suppress(Exception):  # an expiring lease is the fallback
            with sessions.begin() as session:
                lease.release(session)
    try:
        _record_success(sessions, mailbox, ports.clock.now(), time.monotonic() - started)
    except SQLAlchemyError as exc:  # the mail is committed; only the health record is missing
        log.warning("mailbox %s: could not record poll health: %s", mailbox.name, exc)
    return report


def _drain(sessions: sessionmaker[Session], settings: Settings, mailbox: MailboxConfig, box: MailboxPort,
           ports: Ports, report: PollReport, lease: "store.Lease",
           on_batch: Callable[[PollReport], None] | None = None) -> None:
    with sessions.begin() as session:
        state = store.mailbox_state(session, mailbox.name, mailbox.folder)
        if state.uidvalidity != box.uidvalidity:
            if state.uidvalidity is not None:
                # The server renumbered the folder: read it all again; dedupe by Message-ID
                # and content hash makes that harmless.
                log.warning("mailbox %s: UIDVALIDITY changed %s -> %s; re-reading the folder",
                            mailbox.name, state.uidvalidity, box.uidvalidity)
            state.uidvalidity = box.uidvalidity
            state.last_uid = 0
        if state.first_connected_at is None:
            state.first_connected_at = ports.clock.now()
        last_uid, first_connected = state.last_uid, utc(state.first_connected_at)
    all_new = box.uids_after(last_uid)
    if mailbox.move_to:
        _finish_pending_moves(box, mailbox, last_uid)
    remaining = len(all_new)
    batches = _batches(all_new, box.sizes(all_new), settings["worker.batch_size"], BATCH_BYTES)
    ahead = _parse_ahead(settings, mailbox, len(all_new))
    try:
        for uids, raws, prepared in _fetched(box, batches, ahead):
            remaining -= len(uids)
            # Most batches store every message cleanly: they run without a savepoint per
            # message (about a fifth of the ingestion cost). When one message fails, the
            # batch is rolled back and read again with a savepoint around each message, so
            # only that one is quarantined. A batch of one message needs no second try.
            careful = len(uids) == 1
            try:
                batch = _store_batch(sessions, settings, mailbox, uids, ports, lease, first_connected, remaining,
                                     careful=careful, raws=raws, prepared=prepared)
            except _RetryCarefully as retry:
                log.info("mailbox %s: batch of %d read again message by message: %s", mailbox.name, len(uids), retry)
                batch = _store_batch(sessions, settings, mailbox, uids, ports, lease, first_connected, remaining,
                                     careful=True, raws=_fetch(box, uids), prepared=prepared)
            report.add(batch)
            if on_batch is not None:
                on_batch(batch)
            if mailbox.move_to:
                box.move(uids, mailbox.move_to)
    finally:
        if ahead is not None:
            ahead.close()


def _parse_ahead(settings: Settings, mailbox: MailboxConfig, waiting: int) -> ParseAhead | None:
    """A parse process for a poll that finds a backlog (intake/parse_process.py); None for a
    few messages, or when it cannot start (the poll then parses as it stores)."""
    threshold = settings["worker.parse_process_after"]
    if threshold <= 0 or waiting < threshold:
        return None
    try:
        ahead = ParseAhead(settings["worker.max_message_bytes"]).start()
    except Exception as exc:  # noqa: BLE001 - no second process: parse in this one, as on a small poll
        log.warning("mailbox %s: could not start the parse process (%s: %s); parsing here",
                    mailbox.name, type(exc).__name__, exc)
        return None
    log.info("mailbox %s: %d messages waiting: parsing them one batch ahead in a second process (pid %s)",
             mailbox.name, waiting, ahead.pid)
    return ahead


@dataclass
class Prepared:
    """What the parse process read of a batch before the worker stores it, by content hash:
    each message's quick header look and its parse (both empty without the process; the
    worker then reads each message itself). Parses are taken out as they are used."""

    headers: dict[str, QuickHeaders] = field(default_factory=dict)
    parsed: dict[str, ParseResult] = field(default_factory=dict)


def _fetched(box: MailboxPort, batches: Iterable[list[int]], ahead: ParseAhead | None
             ) -> Iterator[tuple[list[int], collections.deque[RawMessage], Prepared]]:
    """Each batch's UIDs, its fetched messages (a deque, emptied as they are stored) and what
    the parse process read of them. With the process, the next batch is fetched and handed
    to it before this one is given out, so it is read there while this one is stored here.

    The first batch is read here, not handed over: the process takes about 0.2 s to start,
    which the worker would otherwise spend waiting for the first answer; it starts and reads
    the second batch while the worker stores the first."""
    current: tuple[list[int], collections.deque[RawMessage]] | None = None
    submitted = False  # whether `current` went to the process
    for uids in batches:
        raws = _fetch(box, uids)
        if ahead is None:
            yield uids, raws, Prepared()
            continue
        if current is None:
            current = (uids, raws)
            continue
        results = _collected(ahead, current[1]) if submitted else Prepared()
        # A message larger than a batch, alone, is read here as it is stored, as on a small
        # poll. Handed over, its copies in the pipe and in the answer would be held at once
        # with the message itself, and it sets the worker's peak memory.
        submitted = sum(len(raw.data) for raw in raws) <= BATCH_BYTES
        if submitted:
            ahead.submit([raw.data for raw in raws])
        yield current[0], current[1], results
        current = (uids, raws)
    if current is not None:
        yield current[0], current[1], _collected(ahead, current[1]) if ahead is not None and submitted else Prepared()


def _fetch(box: MailboxPort, uids: list[int]) -> collections.deque[RawMessage]:
    # A deque, emptied as the batch is stored: a message's fetched copy is dropped once it
    # is stored; its bytes then live only in its row until the batch is written (a message
    # over 1 MB on SQLite is written, and let go, at once).
    return collections.deque(box.fetch(uids, batch_size=len(uids)))


def _collected(ahead: ParseAhead, raws: Sequence[RawMessage]) -> Prepared:
    results = ahead.collect()
    if results is None:
        return Prepared()
    return Prepared({raw.content_hash: head for raw, (head, _) in zip(raws, results)},
                    {raw.content_hash: parsed for raw, (_, parsed) in zip(raws, results)})


class _RetryCarefully(Exception):
    """A batch stored without per-message savepoints failed: one of its messages did, or
    its write clashed with another writer's rows."""


def _store_batch(sessions: sessionmaker[Session], settings: Settings, mailbox: MailboxConfig,
                 uids: list[int], ports: Ports, lease: "store.Lease", first_connected: dt.datetime | None,
                 remaining: int, *, careful: bool, raws: collections.deque[RawMessage],
                 prepared: Prepared) -> PollReport:
    """Store one fetched batch (`raws`, see _fetch) with its checkpoint, in one transaction;
    what it counted. `prepared`: what the parse process read of it (a message it did not
    read is read here)."""
    batch = PollReport(mailbox=mailbox.name)
    batch.fetched = len(raws)
    with sessions.begin() as session:
        # Renewed first when careful; in one pass, last: the rows are written by the flush
        # that follows, so on SQLite the batch holds the database's one write lock only
        # while they are written, and delivery can record sends while we parse.
        if careful:
            _renew(session, lease, ports, mailbox)
        index = BatchIndex.load(session, raws, prepared.headers)
        if ports.acknowledger is not None:
            ports.acknowledger.prepare(session, index.senders)
        while raws:
            raw = raws.popleft()
            _ingest_one(session, settings, mailbox, raw, ports, batch, first_connected, index, careful=careful,
                        parsed=prepared.parsed.pop(raw.content_hash, None))
            del raw  # the deque no longer holds it: nor does this frame
        if not careful:
            try:
                session.flush()  # the batch's rows, all at once
            except IntegrityError as exc:
                # Another writer stored a row that clashes with one of ours meanwhile (the
                # same application, or an id we handed out): store it again carefully.
                raise _RetryCarefully(f"writing the batch: {str(exc.orig).splitlines()[0][:300]}") from exc
            _renew(session, lease, ports, mailbox)
        state = store.mailbox_state(session, mailbox.name, mailbox.folder)
        state.last_uid = max(uids)
        state.backlog = remaining
    return batch


def _renew(session: Session, lease: "store.Lease", ports: Ports, mailbox: MailboxConfig) -> None:
    if not lease.renew(session, ports.clock.now()):
        # We stalled past the lease and another worker took over: stop without committing;
        # it re-reads these messages from the unchanged checkpoint.
        raise MailboxUnavailable(mailbox.name, "lease lost to another worker")


# A batch holds at most this many bytes of fetched mail (a larger message is a batch of
# its own). Its rows are written together at the end of the batch, so with their parsed
# copies this is what the worker's memory grows by while it reads a backlog.
BATCH_BYTES = 2 * 1024 * 1024


def _batches(uids: Sequence[int], sizes: dict[int, int], count: int, max_bytes: int) -> Iterator[list[int]]:
    """Consecutive runs of UIDs (ascending), each at most `count` long and at most
    `max_bytes` of mail, except that a message larger than that is a batch of its own."""
    batch: list[int] = []
    total = 0
    for uid in uids:
        size = sizes.get(uid, 0)
        if batch and (len(batch) >= count or total + size > max_bytes):
            yield batch
            batch, total = [], 0
        batch.append(uid)
        total += size
    if batch:
        yield batch


def _finish_pending_moves(box: MailboxPort, mailbox: MailboxConfig, last_uid: int) -> None:
    """Messages stored by an earlier run that stopped before moving them."""
    leftover = [uid for uid in box.uids_after(0) if uid <= last_uid]
    if leftover:
        box.move(leftover, mailbox.move_to)


@dataclass
class BatchIndex:
    """What the database already knows about one fetched batch, looked up in bulk (a few
    queries per batch instead of several per message) and kept current as it is stored."""

    sources: set[tuple[str, int, int]]
    by_key: dict[str, Message]
    by_hash: dict[str, Message]
    erased_or_quarantined: set[str]
    keys: dict[str, str] = field(default_factory=dict)  # content hash -> dedupe key, read once
    applications: store.KnownApplications = field(default_factory=store.KnownApplications)
    senders: frozenset[str] = frozenset()  # the From and Reply-To addresses, lower case

    @classmethod
    def load(cls, session: Session, raws: Sequence[RawMessage],
             headers: Mapping[str, QuickHeaders] | None = None) -> "BatchIndex":
        """`headers`: the messages' quick header looks already made (by the parse process),
        by content hash; the others are made here."""
        made = headers or {}
        heads = {r.content_hash: made.get(r.content_hash) or quick_headers(r.data) for r in raws}
        keys = {h: store.message_id_key(head.message_id, h) for h, head in heads.items()}
        hashes = list(keys)
        mids = [_mid_hash(k) for k in keys.values() if not k.startswith("hash:")]
        blocked = store.tombstoned(session, hashes, mids) | store.quarantined_hashes(session, hashes)
        # The senders' applications, read once: a query per message also flushed the
        # previous message's rows on its own, a third of the cost of storing a backlog.
        senders = {e for head in heads.values() for e in head.senders}
        return cls(store.known_sources(session, [r.ref for r in raws]), store.messages_by_key(session, keys.values()),
                   store.messages_by_hash(session, hashes), blocked, keys,
                   store.KnownApplications(store.applications_by_email(session, senders)), frozenset(senders))

    def key_of(self, raw: RawMessage) -> str:
        key = self.keys.get(raw.content_hash)
        return key if key is not None else store.message_id_key(quick_message_id(raw.data), raw.content_hash)

    def existing(self, key: str, content_hash: str) -> Message | None:
        return self.by_key.get(key) or self.by_hash.get(content_hash)

    def blocked(self, key: str, content_hash: str) -> bool:
        return content_hash in self.erased_or_quarantined or (not key.startswith("hash:") and _mid_hash(key) in self.erased_or_quarantined)

    def add(self, message: Message) -> None:
        self.by_key[message.message_id_key] = message
        self.by_hash[message.content_hash] = message


def _ingest_one(session: Session, settings: Settings, mailbox: MailboxConfig, raw: RawMessage, ports: Ports,
                report: PollReport, first_connected: dt.datetime | None, index: BatchIndex, *,
                careful: bool = True, parsed: ParseResult | None = None) -> None:
    """Store one fetched message exactly once; quarantine it if our code fails on it.

    Not `careful`: no savepoint, and a failure raises _RetryCarefully (the caller rolls the
    batch back and stores it again carefully). `parsed`: the message as the parse process
    read it (else it is parsed here, if it is new)."""
    ref = raw.ref
    if (ref.mailbox, ref.uidvalidity, ref.uid) in index.sources:
        report.duplicates += 1
        return
    content_hash = raw.content_hash
    key = index.key_of(raw)
    existing = index.existing(key, content_hash)
    if existing is not None:
        # The same message seen again (another group mailbox, or a re-read folder).
        store.add_source(session, existing, raw.ref)
        report.duplicates += 1
        if mailbox.group and existing.kind == Kind.INTEREST.value and mailbox.group not in (existing.groups or []):
            with _savepoint(session, careful):
                _add_mailbox_group(session, settings, mailbox, existing, raw, ports, first_connected, careful=careful,
                                   parsed=parsed)
        return
    if index.blocked(key, content_hash):
        report.duplicates += 1
        return
    try:
        with _savepoint(session, careful):
            outcome = process_raw(session, settings, mailbox, raw, ports, first_connected, key=key, careful=careful,
                                  known=index.applications, parsed=parsed)
    except IntegrityError as exc:
        if not careful:
            raise _RetryCarefully(f"uid {ref.uid}: {str(exc.orig).splitlines()[0][:300]}") from exc
        # Another worker stored the same bytes (from another mailbox) a moment ago.
        existing = store.messages_by_hash(session, [content_hash]).get(content_hash)
        if existing is None:
            raise
        store.add_source(session, existing, raw.ref)
        report.duplicates += 1
        return
    except DBAPIError:
        raise  # the database's trouble, not the message's: roll the batch back, keep the checkpoint
    except Exception as exc:  # the per-message guard: one bad message must not stop the mailbox
        reason = f"internal error: {type(exc).__name__}: {exc}"
        if not careful:
            raise _RetryCarefully(f"uid {ref.uid}: {reason}") from exc
        log.exception("mailbox %s uid %s quarantined: %s", mailbox.name, raw.ref.uid, reason)
        _quarantine(session, raw, ports, reason + "\n" + traceback.format_exc(limit=5))
        report.quarantined += 1
        return
    if outcome.message is not None:
        index.add(outcome.message)
    report.stored += 1
    report.kinds[outcome.kind] = report.kinds.get(outcome.kind, 0) + 1
    report.acks_queued += int(outcome.ack_queued)


def _savepoint(session: Session, careful: bool) -> ContextManager[object]:
    return session.begin_nested() if careful else contextlib.nullcontext()


@dataclass(frozen=True)
class Outcome:
    kind: str
    ack_queued: bool = False
    message: Message | None = None


def process_raw(session: Session, settings: Settings, mailbox: MailboxConfig, raw: RawMessage, ports: Ports,
                first_connected: dt.datetime | None, *, key: str, careful: bool = True,
                known: "store.KnownApplications | None" = None, parsed: ParseResult | None = None) -> Outcome:
    """Parse, decide and store one new message in the caller's transaction (`careful`: see
    _ingest_one; `known`: applications already read in this transaction; `parsed`: the
    message as the parse process read it)."""
    now = ports.clock.now()
    inbound = parsed if parsed is not None else _parse_here(raw, settings)
    if isinstance(inbound, Unparseable):
        _store_unparseable(session, mailbox, raw, ports, key, inbound.reason, now)
        _quarantine(session, raw, ports, f"unparseable: {inbound.reason}")
        return Outcome(Kind.UNPARSEABLE.value)
    known = known if known is not None else store.KnownApplications()
    ctx = _classify_context(session, settings, inbound, known)
    verdict = classify(inbound, ctx)
    message = _store_message(session, mailbox, raw, inbound, verdict, ports, key, now)
    applications: list[Application] = []
    if verdict.kind is Kind.INTEREST:
        applications = _apply_interest(session, settings, mailbox, inbound, message, known, careful=careful)
    elif verdict.kind in (Kind.FOLLOW_UP, Kind.WITHDRAWAL):
        applications = _apply_to_thread(session, inbound, message, verdict)
    elif verdict.kind is Kind.BOUNCE and ports.acknowledger is not None:
        ports.acknowledger.record_bounce(session, inbound)
    message.groups = sorted({a.group_code for a in applications}) or message.groups
    row = None
    if ports.acknowledger is not None:
        row = ports.acknowledger.enqueue(session, inbound=inbound, message=message, verdict=verdict,
                                         applications=applications, mailbox=mailbox,
                                         mailbox_first_connected_at=first_connected)
    return Outcome(verdict.kind.value, ack_queued=row is not None, message=message)


def _parse_here(raw: RawMessage, settings: Settings) -> ParseResult:
    try:
        return parse_or_reason(raw.data, max_bytes=settings["worker.max_message_bytes"])
    finally:
        if len(raw.data) >= LARGE_MESSAGE:
            _return_freed_memory()


def _classify_context(session: Session, settings: Settings, inbound: InboundMessage,
                      known: "store.KnownApplications") -> ClassifyContext:
    thread_ids = ([inbound.in_reply_to] if inbound.in_reply_to else []) + list(inbound.references)
    sender = (inbound.reply_to or inbound.from_)
    return ClassifyContext(
        own_addresses=settings.own_addresses,
        message_id_domain=settings.message_id_domain,
        known_message_ids=store.known_message_ids(session, thread_ids),
        known_references=store.known_references(session, find_references(inbound.subject)),
        sender_has_application=bool(sender and known.of(session, sender.email)),
    )


def _store_message(session: Session, mailbox: MailboxConfig, raw: RawMessage, inbound: InboundMessage,
                   verdict: Verdict, ports: Ports, key: str, now: dt.datetime) -> Message:
    message = Message(
        message_id=inbound.message_id, message_id_key=key, content_hash=raw.content_hash, mailbox=mailbox.name,
        kind=verdict.kind.value, reason=verdict.reason, groups=[],
        from_address=inbound.from_.email if inbound.from_ else "", from_name=inbound.from_.name if inbound.from_ else "",
        reply_to=inbound.reply_to.email if inbound.reply_to else "", to_addresses=list(inbound.recipients),
        subject=inbound.subject, in_reply_to=inbound.in_reply_to, references=list(inbound.references),
        received_at=_received_at(raw, inbound, now), fetched_at=now, size=len(raw.data), oversize=inbound.oversize,
        body_text=inbound.text, body_html=inbound.html,
    )
    writer = store.BlobWriter(session)
    sealed, encrypted = ports.cipher.seal(raw.data)
    blobs = [RawMessageRow(encrypted=encrypted, stored_at=now)]
    blobs[0].data = writer.value(blobs[0], RawMessageRow.__tablename__, sealed)
    message.raw = blobs[0]
    for att in inbound.attachments:
        data, enc = ports.cipher.seal(att.data)
        row = AttachmentRow(filename=att.filename, content_type=att.content_type, size=att.size, encrypted=enc)
        row.data = writer.value(row, AttachmentRow.__tablename__, data)
        blobs.append(row)
    message.attachments.extend(blobs[1:])
    session.add(message)
    # Not read again in this batch: a 10 MB attachment held until the batch commits is what
    # sets the worker's peak memory. The rows are written with the message's next flush
    # (one flush a message, not three), except that large values on SQLite are written now.
    store.expire_after_flush(session, blobs, ["data"])
    store.add_source(session, message, raw.ref)
    if writer.pending:
        session.flush()
        writer.write()
    return message


def _received_at(raw: RawMessage, inbound: InboundMessage, now: dt.datetime) -> dt.datetime:
    """When the mail reached us: the server's INTERNALDATE (the sender cannot forge it)."""
    for candidate in (raw.internal_date, inbound.date):
        if candidate is not None and candidate <= now + dt.timedelta(days=1):
            return candidate if candidate.tzinfo else candidate.replace(tzinfo=dt.timezone.utc)
    return now


def _apply_interest(session: Session, settings: Settings, mailbox: MailboxConfig, inbound: InboundMessage,
                    message: Message, known: "store.KnownApplications", *,
                    careful: bool = True) -> list[Application]:
    routed: Route = route(inbound, settings.groups, mailbox_group=mailbox.group)
    message.groups = list(routed.groups)
    message.route_reason = routed.reason
    applicant = extract_applicant(inbound)
    if applicant is None:
        message.reason = f"{message.reason}; no valid sender address, no application created"
        return []
    apps = []
    for code in routed.groups:
        app, created = store.get_or_create_application(session, applicant, code, message.received_at, routed.reason,
                                                       known=known, guard=careful)
        if not created:
            app.needs_attention = True
        store.link(session, app, message, new_message=True)
        apps.append(app)
    return apps


def _add_mailbox_group(session: Session, settings: Settings, mailbox: MailboxConfig, message: Message,
                       raw: RawMessage, ports: Ports, first_connected: dt.datetime | None, *,
                       careful: bool = True, parsed: ParseResult | None = None) -> None:
    """One message sent to two group mailboxes: stored once, an application in each group."""
    inbound = parsed if parsed is not None else _parse_here(raw, settings)
    if isinstance(inbound, Unparseable):  # stored as interest before, so not expected
        return
    applicant = extract_applicant(inbound)
    if applicant is None:
        return
    app, _ = store.get_or_create_application(session, applicant, mailbox.group, message.received_at,
                                             f"arrived in the {mailbox.group} mailbox", guard=careful)
    store.link(session, app, message)
    message.groups = sorted({*(message.groups or []), mailbox.group} - {TRIAGE}) or [mailbox.group]
    if ports.acknowledger is not None:
        verdict = Verdict(Kind(message.kind), message.reason)
        ports.acknowledger.enqueue(session, inbound=inbound, message=message, verdict=verdict, applications=[app],
                                   mailbox=mailbox, mailbox_first_connected_at=first_connected)


def _apply_to_thread(session: Session, inbound: InboundMessage, message: Message, verdict: Verdict) -> list[Application]:
    thread_ids = ([inbound.in_reply_to] if inbound.in_reply_to else []) + list(inbound.references)
    apps = store.applications_for_thread(session, thread_ids, find_references(inbound.subject))
    sender = inbound.reply_to or inbound.from_
    if not apps and sender is not None:
        apps = store.applications_of(session, sender.email)
    for app in apps:
        store.link(session, app, message)
        if verdict.kind is Kind.WITHDRAWAL:
            if app.status != "withdrawn":
                app.status = "withdrawn"
                app.status_changed_at = message.fetched_at
        else:
            app.needs_attention = True
    if not apps:
        message.reason = f"{message.reason}; no matching application"
    return apps


def _store_unparseable(session: Session, mailbox: MailboxConfig, raw: RawMessage, ports: Ports, key: str,
                       reason: str, now: dt.datetime) -> None:
    message = Message(message_id="", message_id_key=key, content_hash=raw.content_hash, mailbox=mailbox.name,
                      kind=Kind.UNPARSEABLE.value, reason=reason, groups=[], received_at=raw.internal_date or now,
                      fetched_at=now, size=len(raw.data), acknowledge=False, ack_skip_reason="unparseable")
    session.add(message)
    session.flush()
    store.add_source(session, message, raw.ref)


def _quarantine(session: Session, raw: RawMessage, ports: Ports, reason: str) -> None:
    data, encrypted = ports.cipher.seal(raw.data)
    session.add(Quarantine(mailbox=raw.ref.mailbox, uidvalidity=raw.ref.uidvalidity, uid=raw.ref.uid,
                           content_hash=raw.content_hash, data=data, encrypted=encrypted, reason=reason[:4000],
                           created_at=ports.clock.now()))
    session.flush()


# Parsing a message this large leaves tens of megabytes of freed heap behind (the parser's
# line lists); handed back to the system before the message is stored.
LARGE_MESSAGE = 4 * 1024 * 1024


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc: nothing to do
        return None


def _return_freed_memory() -> None:
    """glibc keeps freed heap memory for reuse; malloc_trim(0) releases what it can."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _mid_hash(message_id: str) -> str:
    mid = message_id.strip().strip("<>").strip().lower()
    return hashlib.sha256(mid.encode("utf-8", "replace")).hexdigest() if mid else ""


def _record_failure(sessions: sessionmaker[Session], mailbox: MailboxConfig, now: dt.datetime, reason: str,
                    seconds: float) -> None:
    with contextlib.suppress(Exception):  # a broken database must not hide the mailbox error
        with sessions.begin() as session:
            state = store.mailbox_state(session, mailbox.name, mailbox.folder)
            state.last_poll_at = now
            state.last_poll_seconds = seconds
            state.polls_total = (state.polls_total or 0) + 1
            state.poll_errors_total = (state.poll_errors_total or 0) + 1
            state.last_error = reason
            state.consecutive_failures = (state.consecutive_failures or 0) + 1
            delay = min(3600, 30 * 2 ** min(state.consecutive_failures - 1, 7))
            state.next_attempt_at = now + dt.timedelta(seconds=delay)


def _record_success(sessions: sessionmaker[Session], mailbox: MailboxConfig, now: dt.datetime, seconds: float) -> None:
    with sessions.begin() as session:
        state = store.mailbox_state(session, mailbox.name, mailbox.folder)
        state.last_poll_at = now
        state.last_poll_seconds = seconds
        state.polls_total = (state.polls_total or 0) + 1
        state.last_success_at = now
        state.last_error = None
        state.consecutive_failures = 0
        state.next_attempt_at = None
