"""Data subjects: find everything stored about one address, export it, erase it.

"Everything stored about an address" (the footprint):
  applications   whose email is the address (any case)
  messages       linked to those applications, or from / reply-to / addressed to it
  outbox rows    to the address, linked to those applications or messages, or whose body
                 mentions the address (a digest, a forwarded reply)
  quarantine     rows whose raw bytes (decrypted) mention the address
  audit events   targeting any of the above (who viewed or changed them), or whose
                 details mention the address
An address matches only as a whole address: ann.lee@x.org does not match joann.lee@x.org.

Erasure deletes the footprint except audit events (kept, ids only; details that mention
the person are redacted), leaves one `subject.erase` audit event with counts, and writes a
tombstone (content hash + Message-ID hash) per erased message so a re-poll of mail still in
the mailbox does not bring the person back. On SQLite, `scrub_storage` after the commit
rewrites the file so the deleted bytes are gone from disk, not just unlinked.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, String, cast, delete, func, or_, select, update
from sqlalchemy.orm import Session

from intake import store
from intake.audit import record
from intake.crypto import RawCipher, tombstone_hashes
from intake.domain import SourceRef
from intake.models import (
    Application,
    ApplicationMessage,
    AttachmentRow,
    AuditEvent,
    Message,
    MessageSource,
    Outbox,
    OutboxApplication,
    Quarantine,
    RawMessageRow,
    Tombstone,
)
from intake.parsing import quick_message_id  # the pipeline's own reading, so the hashes match

EXPORT_FORMAT = 1


# -- matching ------------------------------------------------------------------------------
def normalise(email: str) -> str:
    return email.strip().strip("<>").strip().lower()


def address_pattern(email: str) -> re.Pattern[bytes]:
    """The address as a whole word in bytes (case-insensitive): not inside a longer address."""
    escaped = re.escape(normalise(email).encode("utf-8"))
    return re.compile(rb"(?<![A-Za-z0-9._%+\-])" + escaped + rb"(?![A-Za-z0-9\-_]|\.[A-Za-z0-9])", re.IGNORECASE)


def _mentions(pattern: re.Pattern[bytes], data: bytes | str | None) -> bool:
    if not data:
        return False
    return pattern.search(data.encode("utf-8", "replace") if isinstance(data, str) else data) is not None


# -- the footprint -------------------------------------------------------------------------
@dataclass
class Footprint:
    email: str
    applications: list[int] = field(default_factory=list)
    messages: list[int] = field(default_factory=list)
    outbox: list[int] = field(default_factory=list)
    quarantine: list[int] = field(default_factory=list)
    audit: list[int] = field(default_factory=list)
    names: set[str] = field(default_factory=set)


def find_footprint(session: Session, email: str, cipher: RawCipher | None) -> Footprint:
    """Ids of every row about `email`. Raises crypto.KeyMissing / DecryptError when a
    quarantined blob cannot be opened: an export or erasure must not silently miss it."""
    email = normalise(email)
    pattern = address_pattern(email)
    fp = Footprint(email)
    apps = list(session.execute(select(Application).where(func.lower(Application.email) == email)).scalars())
    fp.applications = sorted(a.id for a in apps)
    fp.names = {a.name for a in apps if a.name}
    fp.messages = _messages(session, email, pattern, fp.applications)
    fp.outbox = _outbox(session, email, pattern, fp.applications, fp.messages)
    fp.quarantine = _quarantine(session, pattern, cipher)
    fp.audit = _audit(session, pattern, fp)
    return fp


def _messages(session: Session, email: str, pattern: re.Pattern[bytes], app_ids: list[int]) -> list[int]:
    ids = set(session.execute(select(ApplicationMessage.message_pk).where(
        ApplicationMessage.application_id.in_(app_ids))).scalars()) if app_ids else set()
    ids.update(session.execute(select(Message.id).where(
        or_(func.lower(Message.from_address) == email, func.lower(Message.reply_to) == email))).scalars())
    # to_addresses is a JSON list: narrow with LIKE, then match whole addresses.
    for mid, to in session.execute(select(Message.id, Message.to_addresses).where(
            cast(Message.to_addresses, String).icontains(email, autoescape=True))):
        if any(normalise(a) == email for a in to or []):
            ids.add(mid)
    return sorted(ids)


def _outbox(session: Session, email: str, pattern: re.Pattern[bytes], app_ids: list[int], msg_ids: list[int]) -> list[int]:
    ids = set(session.execute(select(Outbox.id).where(func.lower(Outbox.to_address) == email)).scalars())
    if app_ids:
        ids.update(session.execute(select(OutboxApplication.outbox_id).where(
            OutboxApplication.application_id.in_(app_ids))).scalars())
    if msg_ids:
        ids.update(session.execute(select(Outbox.id).where(Outbox.source_message_pk.in_(msg_ids))).scalars())
    for oid, body in session.execute(select(Outbox.id, Outbox.body).execution_options(yield_per=200)):
        if oid not in ids and _mentions(pattern, body):
            ids.add(oid)
    return sorted(ids)


def _quarantine(session: Session, pattern: re.Pattern[bytes], cipher: RawCipher | None) -> list[int]:
    cipher = cipher or RawCipher()
    ids = []
    for qid, data, encrypted in session.execute(
            select(Quarantine.id, Quarantine.data, Quarantine.encrypted).execution_options(yield_per=200)):
        if _mentions(pattern, cipher.open(data, encrypted)):
            ids.append(qid)
    return ids


def _audit(session: Session, pattern: re.Pattern[bytes], fp: Footprint) -> list[int]:
    targets = {"application": fp.applications, "message": fp.messages, "outbox": fp.outbox, "quarantine": fp.quarantine}
    clauses = [(AuditEvent.target_type == kind) & AuditEvent.target_id.in_([str(i) for i in ids])
               for kind, ids in targets.items() if ids]
    clauses.append(cast(AuditEvent.details, String).icontains(fp.email, autoescape=True))
    ids = set()
    for event in session.execute(select(AuditEvent).where(or_(*clauses))).scalars():
        if event.target_type in targets and event.target_id in {str(i) for i in targets[event.target_type]}:
            ids.add(event.id)
        elif _mentions(pattern, json.dumps(event.details, ensure_ascii=False)):
            ids.add(event.id)
    return sorted(ids)


# -- export --------------------------------------------------------------------------------
def build_export(session: Session, email: str, cipher: RawCipher,
                 now: dt.datetime | None = None) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """The export document and the files that go beside it in the zip."""
    fp = find_footprint(session, email, cipher)
    files: list[tuple[str, bytes]] = []
    data: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "subject": fp.email,
        "exported_at": _iso(now),
        "applications": [_app_doc(a) for a in _rows(session, Application, fp.applications)],
        "messages": [_message_doc(m, cipher, files) for m in _rows(session, Message, fp.messages)],
        "outbox": [_outbox_doc(o, files) for o in _rows(session, Outbox, fp.outbox)],
        "quarantine": [_quarantine_doc(q, cipher, files) for q in _rows(session, Quarantine, fp.quarantine)],
        "audit": [_audit_doc(e) for e in _rows(session, AuditEvent, fp.audit)],
    }
    return data, files


def export_subject(session: Session, email: str, cipher: RawCipher) -> dict[str, Any]:
    """Everything stored about `email`, as one JSON-ready document (raw files referenced by name)."""
    return build_export(session, email, cipher)[0]


def subject_raw_files(session: Session, email: str, cipher: RawCipher) -> list[tuple[str, bytes]]:
    """The raw .eml files (and attachments) an export of `email` references, decrypted."""
    return build_export(session, email, cipher)[1]


def write_export(data: dict[str, Any], raw_files: list[tuple[str, bytes]], out: Path) -> Path:
    """Write a zip holding subject.json and the raw files; returns `out`."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(export_zip_bytes(data, raw_files))
    return out


def export_zip_bytes(data: dict[str, Any], raw_files: list[tuple[str, bytes]]) -> bytes:
    """The export zip in memory (the web app streams this)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("subject.json", json.dumps(data, indent=2, ensure_ascii=False))
        for name, content in raw_files:
            zf.writestr(name, content)
    return buf.getvalue()


def _rows(session: Session, model: Any, ids: list[int]) -> list[Any]:
    if not ids:
        return []
    return list(session.execute(select(model).where(model.id.in_(ids)).order_by(model.id)).scalars())


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _app_doc(a: Application) -> dict[str, Any]:
    return {"id": a.id, "reference": a.reference, "group": a.group_code, "status": a.status, "name": a.name,
            "email": a.email, "job_title": a.job_title, "organisation": a.organisation, "notes": a.notes,
            "route_reason": a.route_reason, "received_at": _iso(a.received_at), "created_at": _iso(a.created_at),
            "updated_at": _iso(a.updated_at), "status_changed_at": _iso(a.status_changed_at)}


def _message_doc(m: Message, cipher: RawCipher, files: list[tuple[str, bytes]]) -> dict[str, Any]:
    raw_name = None
    if m.raw is not None:
        raw_name = f"messages/{m.id}.eml"
        files.append((raw_name, cipher.open(m.raw.data, m.raw.encrypted)))
    attachments = []
    for att in m.attachments:
        name = None
        if att.data is not None:
            name = f"attachments/{m.id}-{att.id}-{_safe(att.filename)}"
            files.append((name, cipher.open(att.data, att.encrypted)))
        attachments.append({"filename": att.filename, "content_type": att.content_type, "size": att.size, "file": name})
    return {"id": m.id, "message_id": m.message_id, "mailbox": m.mailbox, "kind": m.kind, "reason": m.reason,
            "groups": m.groups, "from": m.from_address, "from_name": m.from_name, "reply_to": m.reply_to,
            "to": m.to_addresses, "subject": m.subject, "received_at": _iso(m.received_at),
            "body_text": m.body_text, "body_html": m.body_html, "raw_file": raw_name, "attachments": attachments,
            "sources": [{"mailbox": s.mailbox, "uidvalidity": s.uidvalidity, "uid": s.uid} for s in m.sources],
            "application_ids": sorted(a.id for a in m.applications)}


def _outbox_doc(o: Outbox, files: list[tuple[str, bytes]]) -> dict[str, Any]:
    name = None
    if o.body:
        name = f"sent/{o.id}.eml"
        files.append((name, bytes(o.body)))
    return {"id": o.id, "kind": o.kind, "to": o.to_address, "from": o.from_address, "subject": o.subject,
            "status": o.status, "created_at": _iso(o.created_at), "sent_at": _iso(o.sent_at), "file": name,
            "application_ids": sorted(a.id for a in o.applications)}


def _quarantine_doc(q: Quarantine, cipher: RawCipher, files: list[tuple[str, bytes]]) -> dict[str, Any]:
    name = f"quarantine/{q.id}.eml"
    files.append((name, cipher.open(q.data, q.encrypted)))
    return {"id": q.id, "mailbox": q.mailbox, "reason": (q.reason or "").splitlines()[0] if q.reason else "",
            "created_at": _iso(q.created_at), "file": name}


def _audit_doc(e: AuditEvent) -> dict[str, Any]:
    return {"at": _iso(e.at), "actor": e.actor, "action": e.action, "target_type": e.target_type,
            "target_id": e.target_id, "group": e.group_code, "ip": e.ip, "details": e.details}


def _safe(filename: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", filename or "attachment")[:100] or "attachment"


# -- erasure -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ErasureReport:
    applications: int
    messages: int
    outbox: int
    quarantine: int
    tombstones: int
    audit_redacted: int
    sources: tuple[SourceRef, ...] = ()

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if k != "sources"}


def erase_subject(session: Session, email: str, *, actor: str, cipher: RawCipher | None = None,
                  reason: str = "request") -> ErasureReport:
    """Delete everything about `email` in the caller's transaction; tombstone its messages.

    Without `cipher`, encrypted quarantine rows cannot be searched and KeyMissing is raised."""
    fp = find_footprint(session, email, cipher)
    sources = _sources(session, fp)
    tombstones = _tombstone(session, fp, cipher or RawCipher())
    redacted = _redact_audit(session, fp)
    _delete(session, fp)
    record(session, actor=actor, action="subject.erase", target_type="subject",
           details={"reason": reason, "applications": len(fp.applications), "messages": len(fp.messages),
                    "outbox": len(fp.outbox), "quarantine": len(fp.quarantine), "tombstones": tombstones})
    session.flush()
    session.expire_all()
    return ErasureReport(len(fp.applications), len(fp.messages), len(fp.outbox), len(fp.quarantine),
                         tombstones, redacted, sources)


def is_tombstoned(session: Session, content_hash: str, message_id: str) -> bool:
    """Was a message with these bytes, or this Message-ID, erased?"""
    chash, mhash = tombstone_hashes(content_hash, message_id)
    clause = Tombstone.content_hash == chash
    if mhash:
        clause = or_(clause, Tombstone.message_id_hash == mhash)
    return session.execute(select(Tombstone.content_hash).where(clause).limit(1)).first() is not None


def _sources(session: Session, fp: Footprint) -> tuple[SourceRef, ...]:
    refs = set()
    if fp.messages:
        for mailbox, uidvalidity, uid in session.execute(select(
                MessageSource.mailbox, MessageSource.uidvalidity, MessageSource.uid).where(
                MessageSource.message_pk.in_(fp.messages))):
            refs.add(SourceRef(mailbox, uidvalidity, uid))
    if fp.quarantine:
        for mailbox, uidvalidity, uid in session.execute(select(
                Quarantine.mailbox, Quarantine.uidvalidity, Quarantine.uid).where(Quarantine.id.in_(fp.quarantine))):
            if uid:
                refs.add(SourceRef(mailbox, uidvalidity, uid))
    return tuple(sorted(refs, key=lambda r: (r.mailbox, r.uidvalidity, r.uid)))


def _tombstone(session: Session, fp: Footprint, cipher: RawCipher) -> int:
    pairs: dict[str, str] = {}
    if fp.messages:
        for chash, key in session.execute(select(Message.content_hash, Message.message_id_key).where(
                Message.id.in_(fp.messages))):
            pairs[chash] = tombstone_hashes(chash, key)[1]
    for row in _rows(session, Quarantine, fp.quarantine):
        pairs.setdefault(row.content_hash, tombstone_hashes(row.content_hash, quick_message_id(
            cipher.open(row.data, row.encrypted)))[1])
    known = set(session.execute(select(Tombstone.content_hash).where(Tombstone.content_hash.in_(pairs))).scalars()) if pairs else set()
    for chash, mhash in pairs.items():
        if chash not in known:
            session.add(Tombstone(content_hash=chash, message_id_hash=mhash))
    session.flush()
    return len(pairs)


def _redact_audit(session: Session, fp: Footprint) -> int:
    """Audit events stay (who did what, by id); any detail that names the person goes."""
    patterns = [address_pattern(fp.email)] + [re.compile(re.escape(n.encode()), re.IGNORECASE)
                                              for n in fp.names if len(n) >= 3]
    count = 0
    for event in _rows(session, AuditEvent, fp.audit):
        text = json.dumps(event.details, ensure_ascii=False).encode()
        if any(p.search(text) for p in patterns):
            event.details = {"redacted": "erasure"}
            count += 1
    session.flush()
    return count


def _delete(session: Session, fp: Footprint) -> None:
    """Children first, explicitly, so SQLite and PostgreSQL behave alike whatever the FKs say."""
    apps, msgs, outs = fp.applications, fp.messages, fp.outbox
    opts = {"synchronize_session": False}
    if apps:
        session.execute(update(Application).where(Application.merged_into_id.in_(apps)).values(merged_into_id=None)
                        .execution_options(**opts))
    if outs or apps:
        session.execute(delete(OutboxApplication).where(or_(OutboxApplication.outbox_id.in_(outs),
                                                            OutboxApplication.application_id.in_(apps))).execution_options(**opts))
    if outs:
        session.execute(delete(Outbox).where(Outbox.id.in_(outs)).execution_options(**opts))
    if msgs:
        session.execute(update(Outbox).where(Outbox.source_message_pk.in_(msgs)).values(source_message_pk=None)
                        .execution_options(**opts))
    if msgs or apps:
        session.execute(delete(ApplicationMessage).where(or_(ApplicationMessage.message_pk.in_(msgs),
                                                             ApplicationMessage.application_id.in_(apps))).execution_options(**opts))
    if msgs:
        for model in (AttachmentRow, RawMessageRow, MessageSource):
            session.execute(delete(model).where(model.message_pk.in_(msgs)).execution_options(**opts))
        session.execute(delete(Message).where(Message.id.in_(msgs)).execution_options(**opts))
    if apps:
        store.keep_application_ids_retired(session, apps)  # their references may still be quoted to us
        session.execute(delete(Application).where(Application.id.in_(apps)).execution_options(**opts))
    if fp.quarantine:
        session.execute(delete(Quarantine).where(Quarantine.id.in_(fp.quarantine)).execution_options(**opts))


def confirmed_withdrawals(session: Session) -> list[str]:
    """Addresses whose every application is withdrawn and whose withdrawal reply was sent."""
    confirmed = set(session.execute(
        select(Application.email).join(OutboxApplication, OutboxApplication.application_id == Application.id)
        .join(Outbox, Outbox.id == OutboxApplication.outbox_id)
        .where(Application.status == "withdrawn", Application.email.is_not(None),
               Outbox.kind == "withdrawal", Outbox.status == "sent")).scalars())
    if not confirmed:
        return []
    still_open = set(session.execute(select(Application.email).where(
        Application.email.in_(confirmed), Application.status != "withdrawn")).scalars())
    return sorted(confirmed - still_open)


def scrub_storage(engine: Engine) -> bool:
    """After an erasure or purge commits: make SQLite rewrite its file so deleted bytes are
    gone from disk (WAL checkpointed and truncated, VACUUM, truncated again). True when done;
    False when another connection's open read kept the WAL (run again later). PostgreSQL
    reuses dead rows on its own schedule (see docs/data-protection.md); nothing to do here."""
    if engine.dialect.name != "sqlite":
        return True
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.exec_driver_sql("VACUUM")
        busy = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").first()
    return not (busy and busy[0])

