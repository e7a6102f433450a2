"""Coordinator and admin accounts: argon2 password hashes, roles and group assignments."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from intake.domain import TRIAGE
from intake.errors import IntakeError, NotFound
from intake.models import User, UserGroup

ROLES = ("coordinator", "admin")
MIN_PASSWORD_LENGTH = 10

_hasher = PasswordHasher()
# Verified against when the account does not exist, so a wrong email costs as much time as a
# wrong password and response timing does not reveal which accounts exist.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


class UserError(IntakeError):
    """A user-management request is invalid (bad role, unknown group, weak password)."""


@dataclass(frozen=True)
class Account:
    """What the web app needs to know about a signed-in person."""

    id: int
    email: str
    role: str
    groups: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def visible_groups(self, all_codes: Iterable[str]) -> tuple[str, ...]:
        """Queues this account may see: admins every group and TRIAGE, others their own."""
        if self.is_admin:
            return tuple(all_codes) + (TRIAGE,)
        return self.groups

    def can_see(self, group_code: str) -> bool:
        return self.is_admin or group_code in self.groups

    @classmethod
    def of(cls, user: User) -> "Account":
        return cls(id=user.id, email=user.email, role=user.role, groups=tuple(user.group_codes))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")


def _normal(email: str) -> str:
    return email.strip().lower()


def find(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(func.lower(User.email) == _normal(email)))


def add_user(session: Session, email: str, password: str, *, role: str, groups: Iterable[str] = (),
             known_groups: Iterable[str], name: str = "") -> User:
    """Create an account; groups must be known codes (coordinators need at least one)."""
    email = _normal(email)
    if "@" not in email:
        raise UserError(f"not an email address: {email!r}")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    codes = sorted({g.upper() for g in groups})
    allowed = set(known_groups) | {TRIAGE}
    unknown = [c for c in codes if c not in allowed]
    if unknown:
        raise UserError(f"unknown group(s): {', '.join(unknown)} (known: {', '.join(sorted(allowed))})")
    if role == "coordinator" and not codes:
        raise UserError("a coordinator needs at least one --group")
    if find(session, email) is not None:
        raise UserError(f"user {email} already exists")
    _check_password(password)
    user = User(email=email, name=name, role=role, password_hash=hash_password(password), active=True,
                groups=[UserGroup(group_code=c) for c in codes])
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, email: str, password: str) -> User:
    user = _get(session, email)
    _check_password(password)
    user.password_hash = hash_password(password)
    return user


def disable_user(session: Session, email: str) -> User:
    user = _get(session, email)
    user.active = False
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.email)))


def authenticate(session: Session, email: str, password: str, now: dt.datetime) -> Account | None:
    """The account when the email and password match an active user, else None."""
    user = find(session, email)
    if user is None:
        _verify(_DUMMY_HASH, password)
        return None
    if not _verify(user.password_hash, password) or not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = now
    return Account.of(user)


def load_account(session: Session, user_id: int) -> Account | None:
    """The account for a session's user id, or None when it is gone or disabled."""
    user = session.get(User, user_id)
    if user is None or not user.active:
        return None
    return Account.of(user)


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _get(session: Session, email: str) -> User:
    user = find(session, email)
    if user is None:
        raise NotFound(f"no user {_normal(email)}")
    return user
