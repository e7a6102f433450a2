"""Access control over real HTTP: anonymous visitors, a coordinator of another group, CSRF."""

from __future__ import annotations

import re

import pytest

from tests.web.conftest import PASSWORD


def _status_form(client, app_id: int, status: str) -> dict[str, str]:
    return {"status": status, "csrf_token": client.csrf("/")}


def test_anonymous_requests_reach_only_the_login_page(web, make_application, row):
    app_id = make_application("SWIG")
    anon = web.client()
    for path in ("/", "/queues/SWIG", f"/applications/{app_id}", "/export/SWIG.csv", "/queues/SWIG/export",
                 "/dates", "/audit", "/no-such-page"):
        reply = anon.get(path)
        assert reply.status == 302 and reply.location.startswith("/login"), path
        assert b"Director of Nursing" not in reply.body
    login = anon.get("/login")
    assert login.status == 200
    assert 'name="email"' in login.text and 'name="password"' in login.text
    assert "Privacy notice" in login.text
    # A forged post with a real token from the login page still needs a signed-in account.
    token = anon.csrf()
    refused = anon.post(f"/applications/{app_id}/status", {"status": "contacted", "csrf_token": token})
    assert refused.status == 403
    assert row(app_id).status == "new"


def test_login_redirects_home_and_sets_a_safe_cookie(web, audit_events):
    client = web.client()
    reply = client.login("swig@example.org", PASSWORD)
    assert reply.status == 302 and reply.location == "/"
    cookie = reply.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in cookie  # web.secure_cookies is off on plain-HTTP loopback
    assert client.get("/").status == 200
    assert audit_events(actor="swig@example.org", action="login")


def test_wrong_password_is_refused_and_recorded(web, audit_events):
    client = web.client()
    reply = client.login("sdig@example.org", "not-the-password")
    assert reply.status == 401
    assert "not right" in reply.text
    assert client.get("/").status == 302
    assert audit_events(actor="sdig@example.org", action="login.failed")


def test_security_headers_on_every_page(web):
    client = web.client()
    client.login("swig@example.org", PASSWORD)
    for path in ("/login", "/", "/queues/SWIG"):
        headers = client.get(path).headers
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-content-type-options"] == "nosniff"


def test_swig_coordinator_cannot_see_change_or_export_sdig_data(web, make_application, row, audit_events):
    sdig_id = make_application("SDIG", name="Secret Sdig Person",
                               attachments=[("cv.pdf", "application/pdf", b"%PDF-1.4 secret")])
    triage_id = make_application("TRIAGE", name="Triage Person")
    own_id = make_application("SWIG", name="Own Swig Person")
    with web.sessions() as session:
        from intake.models import Application

        sdig = session.get(Application, sdig_id)
        att_id = sdig.messages[0].attachments[0].id
        sdig_ref = sdig.reference
    client = web.client()
    client.login("swig@example.org", PASSWORD)
    token = client.csrf("/")

    for path in ("/queues/SDIG", "/queues/sdig", "/queues/TRIAGE", f"/applications/{sdig_id}",
                 f"/applications/{triage_id}", f"/applications/{sdig_id}?html={sdig_id}",
                 f"/applications/{sdig_id}/attachments/{att_id}", f"/applications/{own_id}/attachments/{att_id}",
                 "/export/SDIG.csv", "/export/TRIAGE.csv", "/queues/SDIG/export", "/audit"):
        reply = client.get(path)
        assert reply.status == 404, path
        assert b"Secret Sdig Person" not in reply.body and b"%PDF" not in reply.body

    posts = {
        f"/applications/{sdig_id}/status": {"status": "contacted"},
        f"/applications/{sdig_id}/fields": {"name": "Hacked", "notes": "x"},
        f"/applications/{sdig_id}/move": {"group": "SWIG", "reason": "grab it"},
        f"/applications/{sdig_id}/merge": {"duplicate": str(own_id)},
        "/dates/SDIG/add": {"start": "2030-01-01T10:00", "end": "2030-01-01T11:00", "where": "x"},
    }
    for path, form in posts.items():
        assert client.post(path, {**form, "csrf_token": token}).status == 404, path
    # Merging someone else's application into one's own is refused without revealing it.
    reply = client.post(f"/applications/{own_id}/merge", {"duplicate": sdig_ref, "csrf_token": token})
    assert reply.status == 302
    # Moving one's own application into SDIG is allowed (it hands it over), not a way to read SDIG.
    after = row(sdig_id)
    assert (after.status, after.name, after.group_code, after.merged_into_id, after.notes) == \
        ("new", "Secret Sdig Person", "SDIG", None, "")
    assert row(own_id).merged_into_id is None

    for path in ("/", "/queues/SWIG", "/dates"):
        page = client.get(path).text
        assert "Secret Sdig Person" not in page and "/queues/SDIG" not in page and "Triage Person" not in page
    assert not audit_events(actor="swig@example.org", target_id=str(sdig_id))


def test_sdig_dates_cannot_be_edited_by_swig(web, make_application):
    from intake.models import GroupDateRow
    import datetime as dt

    with web.sessions.begin() as session:
        date = GroupDateRow(group_code="SDIG", start=dt.datetime(2031, 5, 1, 9, tzinfo=dt.timezone.utc),
                            end=dt.datetime(2031, 5, 1, 10, tzinfo=dt.timezone.utc), where="Leeds", uid="sdig-test@intake")
        session.add(date)
        session.flush()
        date_id = date.id
    client = web.client()
    client.login("swig@example.org", PASSWORD)
    token = client.csrf("/")
    assert client.post(f"/dates/{date_id}/edit", {"start": "2031-06-01T10:00", "where": "Mine", "csrf_token": token}).status == 404
    assert client.post(f"/dates/{date_id}/delete", {"csrf_token": token}).status == 404
    assert "Leeds" not in client.get("/dates").text
    with web.sessions() as session:
        kept = session.get(GroupDateRow, date_id)
        assert kept is not None and kept.where == "Leeds"


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_posts_without_the_csrf_token_are_refused(web, make_application, row, token):
    app_id = make_application("SWIG")
    client = web.client()
    client.login("swig@example.org", PASSWORD)
    form = {"status": "contacted"}
    if token is not None:
        form["csrf_token"] = token
    reply = client.post(f"/applications/{app_id}/status", form)
    assert reply.status == 400
    assert row(app_id).status == "new"
    # The same post with the session's token works.
    ok = client.post(f"/applications/{app_id}/status", {"status": "contacted", "csrf_token": client.csrf("/")})
    assert ok.status == 302
    assert row(app_id).status == "contacted"


def test_login_post_without_csrf_token_is_refused(web):
    client = web.client()
    reply = client.post("/login", {"email": "swig@example.org", "password": PASSWORD})
    assert reply.status == 400
    assert client.get("/").status == 302


def test_disabled_account_is_signed_out_at_once(web):
    from intake.db import transaction
    from intake.users import add_user, disable_user

    codes = [g.code for g in web.settings.groups]
    with transaction(web.sessions) as session:
        add_user(session, "leaver@example.org", PASSWORD, role="coordinator", groups=["SWIG"], known_groups=codes)
    client = web.client()
    assert client.login("leaver@example.org", PASSWORD).status == 302
    assert client.get("/queues/SWIG").status == 200
    with transaction(web.sessions) as session:
        disable_user(session, "leaver@example.org")
    assert client.get("/queues/SWIG").status == 302
    assert client.login("leaver@example.org", PASSWORD).status == 401


def test_login_is_rate_limited_per_account(web, audit_events):
    """A server of its own, so its limiter's failures do not block the other tests."""
    from intake.web import create_app
    from intake.web.serve import start_in_thread
    from tests.web.client import WebClient

    handle = start_in_thread(web.settings, "127.0.0.1", 0, app=create_app(web.settings, sessions=web.sessions))
    try:
        client = WebClient(f"http://127.0.0.1:{handle.port}")
        statuses = [client.login("admin@example.org", f"wrong-{i}").status for i in range(5)]
        assert statuses == [401] * 5
        blocked = client.login("admin@example.org", PASSWORD)
        assert blocked.status == 429
        assert client.get("/").status == 302
        assert audit_events(actor="admin@example.org", action="login.blocked")
        # Another account from the same address is not yet blocked (per-IP limit is higher).
        assert client.login("sdig@example.org", PASSWORD).status == 302
    finally:
        handle.close()


def test_views_and_exports_are_audited(web, make_application, audit_events):
    app_id = make_application("SWIG")
    client = web.client()
    client.login("swig@example.org", PASSWORD)
    assert client.get(f"/applications/{app_id}").status == 200
    assert client.get("/export/SWIG.csv").status == 200
    views = audit_events(actor="swig@example.org", action="application.view", target_id=str(app_id))
    assert len(views) == 1 and views[0].group_code == "SWIG" and views[0].ip == "127.0.0.1"
    exports = audit_events(actor="swig@example.org", action="queue.export", target_id="SWIG")
    assert exports and exports[-1].details["columns"][0] == "reference"


def test_admin_reads_and_filters_the_audit_trail(web, make_application):
    app_id = make_application("SDIG")
    sdig = web.client()
    sdig.login("sdig@example.org", PASSWORD)
    sdig.get(f"/applications/{app_id}")
    admin = web.client()
    admin.login("admin@example.org", PASSWORD)
    page = admin.get(f"/audit?actor=sdig%40example.org&action=application.view&target_id={app_id}").text
    assert re.search(r"1 event\b", page)
    assert "application.view" in page and f"application {app_id}" in page
