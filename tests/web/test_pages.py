"""The pages and actions over real HTTP: queue filters, export, attachments, move, merge, dates."""

from __future__ import annotations

import csv
import datetime as dt
import re

from tests.web.conftest import PASSWORD


def _signed_in(web, email="swig@example.org"):  # type: ignore[no-untyped-def]
    client = web.client()
    assert client.login(email, PASSWORD).status == 302
    return client


def test_queue_filters_searches_sorts_and_pages(web, make_application):
    tag = "Pagetest Org"
    ids = [make_application("SBAMEIG", organisation=tag, status="contacted" if i % 2 else "new") for i in range(55)]
    admin = _signed_in(web, "admin@example.org")
    page1 = admin.get("/queues/SBAMEIG?q=pagetest+org&sort=received&dir=asc").text
    assert "55 applications · page 1 of 2" in page1
    page2 = admin.get("/queues/SBAMEIG?q=pagetest+org&sort=received&dir=asc&page=2").text
    assert page2.count("/applications/") == 5
    contacted = admin.get("/queues/SBAMEIG?q=PAGETEST&status=contacted").text
    assert "27 applications" in contacted
    # Oldest first: the last-made application is the oldest (the factory makes each older).
    first_link = re.search(r'href="/applications/(\d+)"', page1).group(1)
    assert int(first_link) == ids[-1]
    assert "0 applications" in admin.get("/queues/SBAMEIG?q=%25").text  # LIKE wildcards are literal


def test_export_columns_are_chosen_and_free_text_is_opt_in(web, make_application):
    app_id = make_application("SLGBTIG", name="=cmd|' /C calc'!A0", body_text="Private story about my health.")
    client = _signed_in(web, "admin@example.org")
    default = client.get("/export/SLGBTIG.csv")
    assert default.headers["content-type"] == "text/csv; charset=utf-8"
    assert default.headers["content-disposition"].startswith('attachment; filename="SLGBTIG-')
    text = default.body.decode("utf-8-sig")
    assert "Private story" not in text
    rows = {r["reference"]: r for r in csv.DictReader(text.splitlines())}
    assert rows[f"BLFI-{app_id:06d}"]["name"] == "'=cmd|' /C calc'!A0"
    chosen = client.get("/export/SLGBTIG.csv?columns=reference&columns=first_message").body.decode("utf-8-sig")
    assert chosen.splitlines()[0] == "reference,first_message"
    assert "Private story about my health." in chosen


def test_attachments_download_as_attachments_never_inline(web, make_application):
    app_id = make_application("SWIG", attachments=[("Zoë CV.html", "text/html", b"<script>alert(1)</script>")])
    client = _signed_in(web)
    page = client.get(f"/applications/{app_id}").text
    link = re.search(r'href="(/applications/\d+/attachments/\d+)"', page).group(1)
    reply = client.get(link)
    assert reply.status == 200 and reply.body == b"<script>alert(1)</script>"
    assert reply.headers["content-type"].startswith("text/html")
    assert reply.headers["content-disposition"] == "attachment; filename=\"Zo_ CV.html\"; filename*=UTF-8''Zo%C3%AB%20CV.html"
    assert reply.headers["content-security-policy"] == "sandbox; default-src 'none'"


def test_move_into_a_queue_that_has_the_person_merges(web, make_application, row, audit_events):
    email = "twice@nhs.example"
    swig_id = make_application("SWIG", email=email, name="Twice Person")
    triage_id = make_application("TRIAGE", email=email, name="Twice Person")
    admin = _signed_in(web, "admin@example.org")
    reply = admin.post(f"/applications/{triage_id}/move", {"group": "SWIG", "reason": "same person", "csrf_token": admin.csrf("/")})
    assert reply.status == 302 and reply.location == f"/applications/{swig_id}"
    assert row(triage_id).merged_into_id == swig_id and row(triage_id).group_code == "TRIAGE"
    assert "Moved from TRIAGE to SWIG by admin@example.org: same person" == row(swig_id).route_reason
    with web.sessions() as session:
        from intake.models import Application

        assert len(session.get(Application, swig_id).messages) == 2
    assert audit_events(action="application.move", target_id=str(triage_id))[0].details["merged_into"] == swig_id


def test_coordinator_moves_out_of_their_queue_and_loses_sight_of_it(web, make_application, row):
    app_id = make_application("SWIG")
    client = _signed_in(web)
    reply = client.post(f"/applications/{app_id}/move", {"group": "SDIG", "reason": "wrong group", "csrf_token": client.csrf("/")})
    assert reply.status == 302 and reply.location == "/queues/SWIG"
    assert row(app_id).group_code == "SDIG"
    assert client.get(f"/applications/{app_id}").status == 404


def test_merge_duplicates_and_refuse_bad_transitions(web, make_application, row):
    keep = make_application("SWIG", name="Dup Person", email="dup1@nhs.example")
    dup = make_application("SWIG", name="Dup Person", email="dup2@nhs.example")
    client = _signed_in(web)
    token = client.csrf("/")
    page = client.get(f"/applications/{keep}").text
    assert f"BLFI-{dup:06d}" in page  # offered as a possible duplicate
    assert client.post(f"/applications/{keep}/merge", {"duplicate": f"blfi-{dup:06d}", "csrf_token": token}).status == 302
    assert row(dup).merged_into_id == keep
    queue = client.get("/queues/SWIG?q=dup2%40nhs.example").text  # also reads the flash message
    assert "Merged BLFI-" in queue and "0 applications" in queue
    assert client.post(f"/applications/{keep}/status", {"status": "accepted", "csrf_token": token}).status == 302
    assert row(keep).status == "new"  # new -> accepted skips "contacted": refused
    assert "cannot become accepted" in client.get(f"/applications/{keep}").text


def test_coordinator_adds_edits_and_removes_their_dates(web):
    from sqlalchemy import select

    from intake.models import GroupDateRow

    client = _signed_in(web)
    token = client.csrf("/dates")
    assert client.post("/dates/SWIG/add", {"start": "2031-02-03T10:00", "end": "2031-02-03T12:00", "where": "Room 42",
                                          "csrf_token": token}).status == 302
    with web.sessions() as session:
        added = session.scalars(select(GroupDateRow).where(GroupDateRow.where == "Room 42")).one()
        uid = added.uid
    assert uid.endswith("@intake") and added.group_code == "SWIG"
    assert added.start.replace(tzinfo=dt.timezone.utc) == dt.datetime(2031, 2, 3, 10, tzinfo=dt.timezone.utc)  # GMT in February
    assert client.post(f"/dates/{added.id}/edit", {"start": "2031-07-03T10:00", "end": "2031-07-03T11:00", "where": "Room 43",
                                                  "csrf_token": token}).status == 302
    with web.sessions() as session:
        edited = session.get(GroupDateRow, added.id)
        assert (edited.where, edited.uid) == ("Room 43", uid)
        assert edited.start.replace(tzinfo=dt.timezone.utc) == dt.datetime(2031, 7, 3, 9, tzinfo=dt.timezone.utc)  # BST
    assert client.post(f"/dates/{added.id}/edit", {"start": "2031-07-03T10:00", "end": "2031-07-03T09:00",
                                                  "csrf_token": token}).status == 302
    assert "The end is before the start." in client.get("/dates").text
    assert client.post(f"/dates/{added.id}/delete", {"csrf_token": token}).status == 302
    with web.sessions() as session:
        assert session.get(GroupDateRow, added.id) is None


def test_dashboard_counts_only_visible_groups(web, make_application):
    make_application("SDIG", name="Dash Sdig")
    sdig = _signed_in(web, "sdig@example.org").get("/").text
    assert "/queues/SDIG" in sdig and "/queues/SWIG" not in sdig and "<svg" in sdig
    admin = _signed_in(web, "admin@example.org").get("/").text
    assert all(f"/queues/{c}" in admin for c in ("SWIG", "SDIG", "SBAMEIG", "SLGBTIG", "TRIAGE"))
    assert "SLGBT+IG" in admin
