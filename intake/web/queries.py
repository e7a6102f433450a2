"""The queue query shared by the queue page and the CSV export: filter, search, sort."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from intake.domain import Status
from intake.models import Application, ApplicationMessage

SORTS = {
    "received": Application.received_at,
    "name": Application.name,
    "organisation": Application.organisation,
    "status": Application.status,
    "updated": Application.updated_at,
    "reference": Application.id,
}
STATUSES = tuple(s.value for s in Status)


@dataclass(frozen=True)
class QueueFilter:
    """A queue view as the URL describes it; unknown values fall back to defaults."""

    group_code: str
    status: str = ""
    search: str = ""
    sort: str = "received"
    descending: bool = False

    @classmethod
    def from_args(cls, group_code: str, args: Mapping[str, str]) -> "QueueFilter":
        status = args.get("status", "")
        sort = args.get("sort", "received")
        return cls(group_code=group_code, status=status if status in STATUSES else "",
                   search=args.get("q", "").strip()[:200], sort=sort if sort in SORTS else "received",
                   descending=args.get("dir") == "desc")

    def where(self) -> list:  # type: ignore[type-arg]
        clauses = [Application.group_code == self.group_code, Application.merged_into_id.is_(None)]
        if self.status:
            clauses.append(Application.status == self.status)
        if self.search:
            clauses.append(or_(Application.name.icontains(self.search, autoescape=True),
                               Application.email.icontains(self.search, autoescape=True),
                               Application.organisation.icontains(self.search, autoescape=True)))
        return clauses

    def select(self) -> Select:  # type: ignore[type-arg]
        column = SORTS[self.sort]
        order = [column.desc(), Application.id.desc()] if self.descending else [column.asc(), Application.id.asc()]
        return select(Application).where(*self.where()).order_by(*order)

    def count(self, session: Session) -> int:
        return session.scalar(select(func.count()).select_from(Application).where(*self.where())) or 0


def message_counts(session: Session, application_ids: Iterable[int]) -> dict[int, int]:
    ids = list(application_ids)
    if not ids:
        return {}
    rows = session.execute(select(ApplicationMessage.application_id, func.count())
                           .where(ApplicationMessage.application_id.in_(ids))
                           .group_by(ApplicationMessage.application_id))
    return {app_id: n for app_id, n in rows}
