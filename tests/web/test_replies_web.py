"""Replying from the web app over real HTTP (and in real Chromium): draft, edit, send through the
outbox to a real SMTP server, bulk sends from a queue, access checks, needs-attention."""

from __future__ import annotations

import datetime as dt
import email
import html
import itertools
import os
import re
import uuid
from email import policy

import icalendar
import pytest
from sqlalchemy import func, select

from intake.clock import LONDON

from tests.support.config import write_config
from tests.web.conftest import PASSWORD, sign_in

_seq = itertools.count(1)


def _signed_in(web, email_address="swig@example.org"):  # type: ignore[no-untyped-def]
    client = web.client()
    assert client.login(email_address, PASSWORD).status == 302
    return client


def _add_date(web, group: str = "SWIG", days: int = 30, where: str = "Online (Microsoft Teams)") -> dt.datetime:
    """An upcoming session for the group; returns its start (UTC, as the form offers it)."""
    from intake.models import GroupDateRow

    n = next(_seq)
    start = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days)).replace(hour=10, minute=n % 60, second=0,
                                                                                  microsecond=0)
    with web.sessions.begin() as session:
        session.add(GroupDateRow(group_code=group, start=start, end=start + dt.timedelta(hours=2), where=where,
                                 uid=f"web-reply-{n}-{os.getpid()}@intake"))
    return start


def _outbox(web, app_id: int) -> list:
    from intake.models import Outbox, OutboxApplication

    with web.sessions() as session:
        return list(session.scalars(select(Outbox).join(OutboxApplication)
                                    .where(OutboxApplication.application_id == app_id).order_by(Outbox.id)))


def _message_id(web, app_id: int) -> str:
    from intake.models import Application

    with web.sessions() as session:
        return session.get(Application, app_id).messages[0].message_id.strip("<>")


def _textarea(page_html: str, name: str) -> str:
    found = re.search(rf'<textarea[^>]*name="{name}"[^>]*>(.*?)</textarea>', page_html, re.S)
    assert found, f"no textarea {name}"
    return html.unescape(found.group(1))


def _input(page_html: str, name: str) -> str:
    found = re.search(rf'<input[^>]*name="{name}"[^>]*value="([^"]*)"', page_html)
    assert found, f"no input {name}"
    return html.unescape(found.group(1))


def _deliver(web, smtp_server, tmp_path, at: dt.datetime | None = None):  # type: ignore[no-untyped-def]
    """Run the real delivery job over the web app's database, into the test SMTP server."""
    from intake.clock import FixedClock
    from intake.config import load_settings
    from intake.delivery import deliver_due

    settings = load_settings(write_config(tmp_path / "deliver", mailboxes=[], database_url=web.settings["database.url"],
                                          smtp_port=smtp_server.port), env={})
    return deliver_due(web.sessions, settings, FixedClock(at or dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1)))


def _received_for(smtp_server, address: str) -> list:
    return [r for r in smtp_server.messages if address in r.rcpt_tos]


def test_reply_section_offers_templates_and_the_groups_upcoming_dates(web, make_application):
    start = _add_date(web, "SWIG", where="Quarry House, Leeds")
    sdig_start = _add_date(web, "SDIG", where="Sdig Only Venue")
    app_id = make_application("SWIG", name="Rita Reply")
    page = _signed_in(web).get(f"/applications/{app_id}").text
    assert 'id="reply-h">Reply</h2>' in page
    assert '<label for="reply-template">Reply template</label>' in page
    for value in ("invitation", "more_information", "accepted", "declined", "general"):
        assert f'<option value="{value}">' in page
    assert f'value="{start.isoformat()}"' in page and "Quarry House, Leeds" in page
    assert sdig_start.isoformat() not in page and "Sdig Only Venue" not in page


def test_draft_is_prefilled_from_the_template_with_name_group_date_and_coordinator(web, make_application, audit_events):
    start = _add_date(web, "SWIG", where="Skipton House, London")
    app_id = make_application("SWIG", name="Dora Draft")
    client = _signed_in(web)
    reply = client.get(f"/applications/{app_id}/reply?template=invitation&date={start.isoformat().replace('+', '%2B')}")
    assert reply.status == 200
    body = _textarea(reply.text, "body")
    assert body.startswith("Dear Dora Draft,")
    assert "Senior Women Influencers Group (SWIG)" in body
    local = start.astimezone(LONDON)
    assert local.strftime("%A %-d %B %Y") in body and "Skipton House, London" in body
    assert "swig@example.org" in body  # the signed-in coordinator signs it (no display name set)
    assert _input(reply.text, "subject").startswith("Invitation: SWIG session on ")
    assert _input(reply.text, "date") == start.isoformat()
    assert "Calendar invitation attached" in reply.text
    assert "From</span> SWIG &lt;swig@example.org&gt;" in reply.text
    assert [e.details for e in audit_events(action="reply.draft", target_id=str(app_id))] == [{"template": "invitation"}]
    assert _outbox(web, app_id) == []  # drafting sends nothing

    general = client.get(f"/applications/{app_id}/reply?template=general&date={start.isoformat().replace('+', '%2B')}")
    assert general.status == 200 and "Calendar invitation attached" not in general.text  # only invitations carry a date
    unknown = client.get(f"/applications/{app_id}/reply?template=../../etc/passwd")
    assert unknown.status == 302 and unknown.location == f"/applications/{app_id}"
    assert "Choose one of the reply templates." in client.get(unknown.location).text


def test_send_queues_a_threaded_reply_then_delivers_it_over_smtp(web, make_application, row, audit_events,
                                                               smtp_server, tmp_path):
    start = _add_date(web, "SWIG", where="Online (Microsoft Teams)")
    app_id = make_application("SWIG", name="Sam Sender")
    app = row(app_id)
    client = _signed_in(web)
    draft = client.get(f"/applications/{app_id}/reply?template=invitation&date={start.isoformat().replace('+', '%2B')}")
    edited = _textarea(draft.text, "body").replace("Dear Sam Sender,", "Dear Sam,\n\nLovely to hear from you.")
    form = {"csrf_token": client.csrf(f"/applications/{app_id}"), "template": "invitation", "date": start.isoformat(),
            "subject": "Your SWIG invitation", "body": edited, "send_key": _input(draft.text, "send_key")}
    sent = client.post(f"/applications/{app_id}/reply", form)
    assert sent.status == 302 and sent.location == f"/applications/{app_id}#sent-h"

    # One outbox row, in the applicant's thread, from the group address; the application moved on.
    [out] = _outbox(web, app_id)
    assert (out.kind, out.status, out.to_address, out.created_by) == ("reply", "pending", app.email, "swig@example.org")
    assert out.in_reply_to == _message_id(web, app_id)
    assert out.subject == f"Your SWIG invitation [{app.reference}]"
    assert row(app_id).status == "contacted"
    [event] = audit_events(action="reply.send", target_id=str(app_id))
    assert (event.actor, event.ip, event.group_code) == ("swig@example.org", "127.0.0.1", "SWIG")
    assert event.details == {"template": "invitation", "outbox_id": out.id, "status": ["new", "contacted"]}

    # Back on the application page: the flash, and the reply listed with its delivery status.
    page = client.get(f"/applications/{app_id}").text
    assert f"Reply queued for sending to {app.email}. The application is contacted." in page
    sent_table = page.split('id="sent"')[1]
    assert "<td>reply</td>" in sent_table and f"Your SWIG invitation [{app.reference}]" in sent_table
    assert 'delivery-pending">pending<' in sent_table
    # A double click (or the browser re-posting the form) queues nothing more.
    again = client.post(f"/applications/{app_id}/reply", form)
    assert again.status == 302 and "already queued" in client.get(f"/applications/{app_id}").text
    assert len(_outbox(web, app_id)) == 1 and len(audit_events(action="reply.send", target_id=str(app_id))) == 1

    # The delivery job takes it to a real SMTP server: threaded, personal, with the .ics.
    _deliver(web, smtp_server, tmp_path)
    [received] = _received_for(smtp_server, app.email)
    assert received.rcpt_tos == [app.email]
    msg = email.message_from_bytes(received.data, policy=policy.default)
    assert msg["From"].addresses[0].addr_spec == "swig@example.org"
    assert msg["In-Reply-To"] == f"<{_message_id(web, app_id)}>"
    assert msg["References"].split()[-1] == f"<{_message_id(web, app_id)}>"
    assert msg["Auto-Submitted"] is None and msg["Cc"] is None
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")  # CRLF on the wire
    assert text.startswith("Dear Sam,\n\nLovely to hear from you.")
    ics = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
    assert ics.get_param("method") == "REQUEST"
    [event] = icalendar.Calendar.from_ical(ics.get_content()).walk("VEVENT")
    assert event.decoded("dtstart") == start
    page = client.get(f"/applications/{app_id}").text
    assert 'delivery-sent">sent<' in page.split('id="sent"')[1]


def test_an_empty_or_impossible_reply_is_shown_again_with_the_reason(web, make_application, row):
    app_id = make_application("SWIG", name="Eddie Empty")
    client = _signed_in(web)
    token = client.csrf(f"/applications/{app_id}")
    empty = client.post(f"/applications/{app_id}/reply", {"csrf_token": token, "template": "general",
                                                          "subject": "Hello", "body": "   ", "send_key": uuid.uuid4().hex})
    assert empty.status == 400 and "Write the message." in empty.text
    assert _input(empty.text, "subject") == "Hello"  # the coordinator's text is kept, not lost
    past = client.post(f"/applications/{app_id}/reply", {
        "csrf_token": token, "template": "invitation", "date": "2001-01-01T10:00:00+00:00",
        "subject": "Come along", "body": "My carefully written words", "send_key": uuid.uuid4().hex})
    assert past.status == 400 and "is not an upcoming SWIG date" in past.text
    assert "My carefully written words" in _textarea(past.text, "body")
    assert _outbox(web, app_id) == [] and row(app_id).status == "new"


def test_reply_posts_without_the_csrf_token_are_refused(web, make_application, row):
    app_id = make_application("SWIG", name="Carl Csrf")
    client = _signed_in(web)
    form = {"template": "general", "subject": "Forged", "body": "Forged body"}
    assert client.post(f"/applications/{app_id}/reply", form).status == 400
    assert client.post(f"/applications/{app_id}/reply", {**form, "csrf_token": "not-the-token"}).status == 400
    assert client.post("/queues/SWIG/bulk/send", {"ids": str(app_id), "template": "general"}).status == 400
    assert _outbox(web, app_id) == [] and row(app_id).status == "new"


def test_swig_coordinator_cannot_draft_send_or_bulk_on_sdig_applications(web, make_application, row, audit_events):
    sdig_id = make_application("SDIG", name="Secret Sdig Replyee")
    own_id = make_application("SWIG", name="Own Swig Replyee")
    client = _signed_in(web)
    token = client.csrf("/")
    assert client.get(f"/applications/{sdig_id}/reply?template=general").status == 404
    refused = client.post(f"/applications/{sdig_id}/reply", {"csrf_token": token, "template": "general",
                                                             "subject": "Hi", "body": "Hello"})
    assert refused.status == 404
    for path in ("/queues/SDIG/bulk", "/queues/SDIG/bulk/send"):
        assert client.post(path, {"csrf_token": token, "ids": str(sdig_id), "template": "general"}).status == 404
    # Another group's id slipped into this queue's bulk form is left out, and not named.
    preview = client.post("/queues/SWIG/bulk", {"csrf_token": token, "ids": str(sdig_id), "template": "general"})
    assert preview.status == 302 and preview.location == "/queues/SWIG"
    assert "Secret Sdig" not in client.get("/queues/SWIG").text
    mixed = client.post("/queues/SWIG/bulk/send", {"csrf_token": token, "ids": [str(sdig_id), str(own_id)],
                                                    "template": "general", "send_key": uuid.uuid4().hex})
    assert mixed.status == 302
    assert "1 message queued for sending, each to one applicant. 1 chosen could not be written to" in client.get("/queues/SWIG").text
    assert len(_outbox(web, own_id)) == 1
    assert _outbox(web, sdig_id) == [] and row(sdig_id).status == "new"
    assert audit_events(action="reply.send", target_id=str(sdig_id)) == []
    # The SDIG coordinator can.
    sdig = _signed_in(web, "sdig@example.org")
    assert sdig.get(f"/applications/{sdig_id}/reply?template=general").status == 200


def test_bulk_of_three_previews_the_first_then_sends_three_separate_messages(web, make_application, row, audit_events,
                                                                            smtp_server, tmp_path):
    tag = f"Bulk Trust {os.getpid()}"
    ids = [make_application("SWIG", name=f"Bulk Person {i}", organisation=tag) for i in range(3)]
    client = _signed_in(web)
    queue = client.get(f"/queues/SWIG?q={tag.replace(' ', '+')}").text
    for app_id in ids:
        assert f'<input type="checkbox" id="pick-{app_id}" name="ids" value="{app_id}">' in queue
        assert f'<label for="pick-{app_id}" class="visually-hidden">Select BLFI-{app_id:06d}</label>' in queue
    assert '<label for="bulk-template">Reply template</label>' in queue
    token = client.csrf("/queues/SWIG")
    form = {"csrf_token": token, "ids": [str(i) for i in ids], "template": "more_information", "date": ""}

    preview = client.post("/queues/SWIG/bulk", form)
    assert preview.status == 200
    assert '<p id="bulk-count" class="big">3 messages will be sent</p>' in preview.text
    first = preview.text.split('id="bulk-first"')[1].split("</article>")[0]
    assert "Dear Bulk Person 0," in html.unescape(first) and "Bulk Person 1" not in first
    assert all(f"BLFI-{i:06d}" in preview.text.split('id="bulk-recipients"')[1] for i in ids)
    assert all(_outbox(web, i) == [] for i in ids)  # a preview sends nothing
    assert audit_events(action="reply.bulk_preview", target_id="SWIG")[-1].details == {"template": "more_information", "count": 3}

    confirm_form = {k: v for k, v in re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', preview.text)
                    if k != "ids"}
    confirm_form["ids"] = re.findall(r'<input type="hidden" name="ids" value="(\d+)"', preview.text)
    assert confirm_form["ids"] == [str(i) for i in ids]
    sent = client.post("/queues/SWIG/bulk/send", confirm_form)
    assert sent.status == 302 and sent.location == "/queues/SWIG"
    assert "3 messages queued for sending, each to one applicant." in client.get("/queues/SWIG").text
    again = client.post("/queues/SWIG/bulk/send", confirm_form)  # the same form posted twice
    assert again.status == 302 and "already queued" in client.get("/queues/SWIG").text

    rows = [_outbox(web, i) for i in ids]
    assert [len(r) for r in rows] == [1, 1, 1]
    rows = [r[0] for r in rows]
    assert [r.to_address for r in rows] == [row(i).email for i in ids]
    assert len({r.message_id for r in rows}) == 3
    assert [r.in_reply_to for r in rows] == [_message_id(web, i) for i in ids]  # each in its own thread
    assert rows[0].next_attempt_at < rows[1].next_attempt_at < rows[2].next_attempt_at  # spaced, not a burst
    assert [row(i).status for i in ids] == ["contacted"] * 3
    assert len([e for i in ids for e in audit_events(action="reply.send", target_id=str(i))]) == 3

    _deliver(web, smtp_server, tmp_path, at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5))
    for i in ids:
        [received] = _received_for(smtp_server, row(i).email)
        assert received.rcpt_tos == [row(i).email]  # never a shared To or Cc
        msg = email.message_from_bytes(received.data, policy=policy.default)
        assert [a.addr_spec for a in msg["To"].addresses] == [row(i).email] and msg["Cc"] is None
        assert msg.get_body(("plain",)).get_content().startswith(f"Dear Bulk Person {ids.index(i)},\r\n")


def test_nothing_to_bulk_send_goes_back_to_the_queue_with_a_reason(web, make_application):
    client = _signed_in(web)
    token = client.csrf("/queues/SWIG")
    none = client.post("/queues/SWIG/bulk", {"csrf_token": token, "template": "general"})
    assert none.status == 302 and "Tick at least one application in this queue." in client.get("/queues/SWIG").text
    app_id = make_application("SWIG")
    bad = client.post("/queues/SWIG/bulk", {"csrf_token": token, "ids": str(app_id), "template": "nonsense"})
    assert bad.status == 302 and "Choose one of the reply templates." in client.get("/queues/SWIG").text
    assert _outbox(web, app_id) == []


def test_triage_and_anonymised_applications_cannot_be_replied_to(web, make_application, row):
    from intake.models import Application

    triage_id = make_application("TRIAGE", name="Tina Triage")
    gone_id = make_application("SWIG", name="Gone Person")
    with web.sessions.begin() as session:
        session.get(Application, gone_id).email = None
    admin = _signed_in(web, "admin@example.org")
    assert "Move this application to a group before replying." in admin.get(f"/applications/{triage_id}").text
    assert "anonymised; there is no one to write to" in admin.get(f"/applications/{gone_id}").text
    assert 'id="reply-template"' not in admin.get(f"/applications/{gone_id}").text
    token = admin.csrf("/")
    for app_id in (triage_id, gone_id):
        reply = admin.post(f"/applications/{app_id}/reply", {"csrf_token": token, "template": "general",
                                                              "subject": "Hi", "body": "Hello"})
        assert reply.status == 302 and _outbox(web, app_id) == []
    assert 'id="bulk-template"' not in admin.get("/queues/TRIAGE").text
    assert admin.post("/queues/TRIAGE/bulk/send", {"csrf_token": token, "ids": str(triage_id),
                                                    "template": "general"}).status == 302
    assert _outbox(web, triage_id) == []


def test_dashboard_lists_applications_that_need_attention_in_the_users_groups(web, make_application):
    from intake.models import Application

    waiting = make_application("SWIG", name="Wendy Waiting")
    quiet = make_application("SWIG", name="Quinn Quiet")
    elsewhere = make_application("SDIG", name="Other Group Waiting")
    with web.sessions.begin() as session:
        for app_id in (waiting, elsewhere):
            session.get(Application, app_id).needs_attention = True
    client = _signed_in(web)

    def attention() -> tuple[int, str]:
        page = client.get("/").text
        section = page.split('id="attention"')[1].split("</section>")[0]
        count = int(re.search(r'id="attention-count">(\d+)<', section).group(1))
        return count, section

    count, section = attention()
    with web.sessions() as session:
        expected = session.scalar(select(func.count()).select_from(Application).where(
            Application.group_code == "SWIG", Application.needs_attention.is_(True), Application.merged_into_id.is_(None)))
    assert count == expected >= 1
    assert f'href="/applications/{waiting}">BLFI-{waiting:06d}</a> Wendy Waiting' in section
    assert "Quinn Quiet" not in section and "Other Group Waiting" not in section
    assert quiet

    # Replying clears it.
    token = client.csrf(f"/applications/{waiting}")
    assert client.post(f"/applications/{waiting}/reply", {"csrf_token": token, "template": "general", "send_key": uuid.uuid4().hex,
                                                          "subject": "Thanks", "body": "Thank you for your answer."}).status == 302
    after, section = attention()
    assert after == count - 1 and "Wendy Waiting" not in section


@pytest.mark.browser
def test_browser_reply_form_end_to_end(page, web, make_application, row):
    start = _add_date(web, "SWIG", days=40, where="Browser Test Venue, Leeds")
    app_id = make_application("SWIG", name="Bella Browser")
    sign_in(page, "swig@example.org")
    page.goto(f"/applications/{app_id}")
    page.get_by_label("Reply template").select_option("invitation")
    page.get_by_label("Session date (invitations only)").select_option(start.isoformat())
    page.get_by_role("button", name="Write reply").click()

    assert page.get_by_role("heading", level=1).inner_text().startswith("Reply to Bella Browser")
    body = page.get_by_label("Message")
    assert body.input_value().startswith("Dear Bella Browser,")
    assert "Browser Test Venue, Leeds" in body.input_value()
    assert "Browser Test Venue, Leeds" in page.locator("#reply-session").inner_text()
    page.get_by_label("Subject").fill("Join us at the SWIG session")
    body.fill(body.input_value().replace("Dear Bella Browser,", "Dear Bella,\n\nIt was good to talk today."))
    page.get_by_role("button", name="Send reply").click()

    assert page.get_by_role("status").first.inner_text().startswith("Reply queued for sending to ")
    assert page.locator("#current-status").inner_text() == "contacted"
    sent = page.locator("#sent tbody tr").filter(has_text="Join us at the SWIG session")
    assert sent.count() == 1
    assert "reply" in sent.inner_text() and "pending" in sent.inner_text()
    [out] = _outbox(web, app_id)
    assert out.subject == f"Join us at the SWIG session [BLFI-{app_id:06d}]"
    msg = email.message_from_bytes(out.body, policy=policy.default)
    assert "It was good to talk today." in msg.get_body(("plain",)).get_content()
    assert [p.get_param("method") for p in msg.walk() if p.get_content_type() == "text/calendar"] == ["REQUEST"]
    assert row(app_id).status == "contacted"


def test_a_bulk_send_writes_only_to_the_queue_it_was_started_from(web, make_application):
    # Even an admin, who may see every group, cannot send SDIG's applicants a message from SWIG.
    sdig_id = make_application("SDIG", name="Sdig Not In This Queue")
    admin = _signed_in(web, "admin@example.org")
    reply = admin.post("/queues/SWIG/bulk/send", {"csrf_token": admin.csrf("/"), "ids": str(sdig_id), "template": "general",
                                                  "send_key": uuid.uuid4().hex})
    assert reply.status == 302 and "Tick at least one application in this queue." in admin.get("/queues/SWIG").text
    assert _outbox(web, sdig_id) == []


def test_a_reply_form_without_its_one_time_key_sends_nothing(web, make_application, row):
    app_id = make_application("SWIG", name="Kay Keyless")
    client = _signed_in(web)
    token = client.csrf(f"/applications/{app_id}")
    for key in ("", "not-a-key", "0" * 31):
        reply = client.post(f"/applications/{app_id}/reply", {"csrf_token": token, "template": "general",
                                                              "subject": "Hi", "body": "Hello", "send_key": key})
        assert reply.status == 302
    assert "This form is out of date" in client.get(f"/applications/{app_id}").text
    assert _outbox(web, app_id) == [] and row(app_id).status == "new"
