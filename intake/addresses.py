"""Email addresses: parse, clean and check them (pure)."""

from __future__ import annotations

import re
from email.utils import getaddresses, parseaddr
from functools import lru_cache

from intake.domain import Address

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_VALID = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")


def clean_header(value: str) -> str:
    """Remove control characters (CR/LF included) and fold runs of space."""
    return " ".join(_CONTROL.sub(" ", value or "").split())


def is_valid_email(email: str) -> bool:
    return bool(email) and len(email) <= 254 and bool(_VALID.match(email))


def parse_address(value: str) -> Address | None:
    """One address from a header value, cleaned; None when there is no usable address."""
    # Short values recur (group addresses, our own From, an applicant's address read from
    # several headers) and the stdlib's parser costs a tenth of a millisecond; a long
    # (hostile) value is parsed but not kept.
    return _parse_address_cached(value) if len(value) <= 500 else _parse_address(value)


def _parse_address(value: str) -> Address | None:
    name, email = parseaddr(clean_header(value))
    email = email.strip().lower()
    if not is_valid_email(email):
        return None
    return Address(email=email, name=clean_header(name).strip('"\' '))


_parse_address_cached = lru_cache(maxsize=256)(_parse_address)


def parse_addresses(values: list[str] | tuple[str, ...]) -> tuple[Address, ...]:
    result: list[Address] = []
    for name, email in getaddresses([clean_header(v) for v in values]):
        email = email.strip().lower()
        if is_valid_email(email) and all(a.email != email for a in result):
            result.append(Address(email=email, name=clean_header(name).strip('"\' ')))
    return tuple(result)


def local_part(email: str) -> str:
    return email.split("@", 1)[0].lower()


def base_address(email: str) -> str:
    """blfi+swig@example.org -> blfi@example.org."""
    local, _, domain = email.lower().partition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def plus_tag(email: str) -> str:
    """blfi+swig@example.org -> 'swig'; '' when there is none."""
    local = local_part(email)
    return local.split("+", 1)[1] if "+" in local else ""
