"""Subject access in the web app: admins download the same export as the CLI; coordinators
and anonymous visitors cannot reach it; every download is audited."""

from __future__ import annotations

import io
import json
import zipfile

from tests.web.conftest import PASSWORD


def test_admin_downloads_everything_about_one_address_and_it_is_audited(web, make_application, audit_events):
    email = "kemi.adeyemi.sar@nhs.example"
    swig = make_application("SWIG", name="Kemi Adeyemi", email=email)
    sbame = make_application("SBAMEIG", name="Kemi Adeyemi", email=email)
    someone_else = make_application("SWIG", name="Other Person")
    admin = web.client()
    admin.login("admin@example.org", PASSWORD)
    page = admin.get("/admin/subject-access")
    assert page.status == 200 and 'name="email"' in page.text
    reply = admin.post("/admin/subject-access", {"email": "Kemi.Adeyemi.SAR@nhs.example", "csrf_token": admin.csrf("/")})
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/zip"
    assert reply.headers["content-disposition"].startswith("attachment;")
    with zipfile.ZipFile(io.BytesIO(reply.body)) as zf:
        data = json.loads(zf.read("subject.json"))
    assert sorted(a["id"] for a in data["applications"]) == sorted([swig, sbame])
    assert someone_else not in [a["id"] for a in data["applications"]]
    assert len(data["messages"]) == 2
    events = audit_events(action="subject.export", actor="admin@example.org")
    assert events and sorted(events[-1].details["applications"]) == sorted([swig, sbame])
    assert events[-1].details["via"] == "web"


def test_coordinators_and_anonymous_visitors_cannot_export(web, make_application, audit_events):
    email = "not.for.coordinators@nhs.example"
    make_application("SWIG", email=email)
    before = len(audit_events(action="subject.export"))
    coordinator = web.client()
    coordinator.login("swig@example.org", PASSWORD)
    assert coordinator.get("/admin/subject-access").status == 404
    refused = coordinator.post("/admin/subject-access", {"email": email, "csrf_token": coordinator.csrf("/")})
    assert refused.status == 404 and b"subject.json" not in refused.body
    anon = web.client()
    assert anon.get("/admin/subject-access").status == 302
    assert anon.post("/admin/subject-access", {"email": email, "csrf_token": anon.csrf()}).status == 403
    assert len(audit_events(action="subject.export")) == before


def test_export_needs_a_csrf_token_and_a_valid_address(web):
    admin = web.client()
    admin.login("admin@example.org", PASSWORD)
    assert admin.post("/admin/subject-access", {"email": "someone@nhs.example"}).status in (400, 403)
    bad = admin.post("/admin/subject-access", {"email": "not an address", "csrf_token": admin.csrf("/")})
    assert bad.status == 302 and bad.location.endswith("/admin/subject-access")
