"""Faults in our own code, injected: no server can make intake's code raise on one message."""

from __future__ import annotations

from typing import Callable

import pytest


def routing_fails_on(monkeypatch: pytest.MonkeyPatch, failing: Callable[[str], bool]) -> None:
    """`intake.pipeline.route` raises RuntimeError("routing exploded") for a message whose
    subject `failing` picks, and routes every other message as usual."""
    import intake.pipeline as pipeline

    real_route = pipeline.route

    def flaky_route(msg, groups, **kw):  # type: ignore[no-untyped-def]
        if failing(msg.subject):
            raise RuntimeError("routing exploded")
        return real_route(msg, groups, **kw)

    monkeypatch.setattr(pipeline, "route", flaky_route)
