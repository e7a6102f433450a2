"""Monitoring endpoints, open without sign-in: GET /healthz (JSON) and GET /metrics (Prometheus).

Anyone who can reach the web app can read these, so they carry counts, ages and mailbox
names (config labels such as "swig") and nothing else: no addresses, no server error
texts (a login error names the account), no database URL. The detail lives behind
`intake check`, which only an administrator on the server can run.

    /healthz  200 {"status": "ok", ...} | 503 {"status": "fail", ...}
    /metrics  200 text/plain; version=0.0.4 | 503 when the database cannot be read
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify
from sqlalchemy.exc import SQLAlchemyError

from intake.ops import health, metrics_text
from intake.web.state import state

bp = Blueprint("ops", __name__)
log = logging.getLogger(__name__)

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
# The per-mailbox fields a monitor may see (health() also has the last error's text).
PUBLIC_MAILBOX_FIELDS = ("ok", "last_success_age_seconds")


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    st = state()
    try:
        with st.sessions() as session:
            ok, detail = health(session, st.settings, st.clock.now())
    except SQLAlchemyError as exc:
        log.error("/healthz: database unreachable: %s", type(exc).__name__)
        return jsonify(status="fail", database="unreachable", mailboxes={}), 503
    mailboxes = {name: {k: box[k] for k in PUBLIC_MAILBOX_FIELDS} | {"last_poll_failed": bool(box["last_error"])}
                 for name, box in detail["mailboxes"].items()}
    return jsonify(status="ok" if ok else "fail", database=detail["database"], mailboxes=mailboxes), 200 if ok else 503


@bp.get("/metrics")
def metrics() -> Response:
    try:
        with state().sessions() as session:
            text = metrics_text(session)
    except SQLAlchemyError as exc:
        log.error("/metrics: database unreachable: %s", type(exc).__name__)
        return Response("# database unreachable\n", status=503, content_type=PROMETHEUS_TEXT)
    return Response(text, content_type=PROMETHEUS_TEXT)
