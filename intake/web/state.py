"""What a running web app holds: settings, the session factory, the clock, the login limiter."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy.orm import Session, sessionmaker

from intake.clock import Clock
from intake.config import Settings
from intake.web.ratelimit import LoginLimiter


@dataclass
class WebState:
    settings: Settings
    sessions: sessionmaker[Session]
    clock: Clock
    limiter: LoginLimiter = field(default_factory=LoginLimiter)


def state() -> WebState:
    return current_app.extensions["intake"]
