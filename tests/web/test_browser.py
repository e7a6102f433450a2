"""End to end in real headless Chromium: sign in, work a queue, export, and read hostile mail."""

from __future__ import annotations

import codecs
import csv
import http.server
import threading

import pytest

from tests.web.conftest import sign_in

pytestmark = pytest.mark.browser


def test_login_page_shows_privacy_notice_and_refuses_a_wrong_password(page):
    page.goto("/")
    assert "/login" in page.url
    assert page.get_by_role("heading", name="Privacy notice").is_visible()
    page.get_by_label("Email address").fill("swig@example.org")
    page.get_by_label("Password").fill("wrong password!")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text().startswith("The email address or password is not right")


def test_work_a_queue_from_triage_to_contacted_then_export(browser, page, web, make_application, row, audit_events, tmp_path):
    app_id = make_application("TRIAGE", name="Triage Tess", organisation="Leeds Teaching Hospitals")
    # The admin sorts triage: opens the application and moves it to SWIG with a reason.
    sign_in(page, "admin@example.org")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Triage").click()
    page.get_by_role("link", name=f"BLFI-{app_id:06d}").click()
    assert page.get_by_role("heading", level=1).inner_text().startswith("Triage Tess")
    page.get_by_label("Move to queue").select_option("SWIG")
    page.get_by_label("Reason").fill("Asked about the women's group")
    page.get_by_role("button", name="Move").click()
    assert page.locator("#current-group").inner_text() == "SWIG"
    assert row(app_id).group_code == "SWIG"

    # The SWIG coordinator finds it in their queue, by search, and marks it contacted.
    context = browser.new_context(base_url=web.url, accept_downloads=True)
    coord = context.new_page()
    try:
        sign_in(coord, "swig@example.org")
        coord.goto("/queues/SWIG")
        coord.get_by_label("Search name, email or organisation").fill("leeds teaching")
        coord.get_by_role("button", name="Apply").click()
        assert coord.locator("#queue-count").inner_text().startswith("1 application")
        coord.get_by_role("link", name=f"BLFI-{app_id:06d}").click()
        coord.get_by_label("Contacted").check()
        coord.get_by_role("button", name="Change status").click()
        assert coord.get_by_role("status").first.inner_text() == "Status changed to contacted."
        assert coord.locator("#current-status").inner_text() == "contacted"
        coord.get_by_label("Job title").fill("Chief Nurse")
        coord.get_by_role("button", name="Save details").click()
        after = row(app_id)
        assert (after.group_code, after.status, after.job_title) == ("SWIG", "contacted", "Chief Nurse")

        # Export the queue as CSV and open the file.
        coord.goto("/queues/SWIG")
        coord.get_by_role("link", name="Export CSV").click()
        with coord.expect_download() as info:
            coord.get_by_role("button", name="Download CSV").click()
        target = tmp_path / "swig.csv"
        info.value.save_as(target)
        raw = target.read_bytes()
        assert raw.startswith(codecs.BOM_UTF8)
        rows = list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))
        ours = [r for r in rows if r["reference"] == f"BLFI-{app_id:06d}"]
        assert ours == [{**ours[0], "group": "SWIG", "status": "contacted", "name": "Triage Tess",
                         "job_title": "Chief Nurse", "organisation": "Leeds Teaching Hospitals", "message_count": "1"}]
        assert list(rows[0]) == ["reference", "group", "status", "name", "email", "job_title", "organisation",
                                 "received_at", "message_count"]
        assert all(r["group"] == "SWIG" for r in rows)
    finally:
        context.close()
    actions = [e.action for e in audit_events(target_id=str(app_id))]
    assert actions == ["application.view", "application.move", "application.view", "application.view",
                       "application.status", "application.view", "application.edit", "application.view"]
    assert audit_events(actor="swig@example.org", action="queue.export")


class _Canary(http.server.BaseHTTPRequestHandler):
    """A 'remote' server: any request to it means the hostile email loaded something."""

    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        _Canary.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass


@pytest.fixture
def canary():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Canary)
    _Canary.hits = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Canary.hits
    server.shutdown()
    server.server_close()


def test_hostile_email_executes_nothing_and_loads_nothing_remote(page, make_application, canary):
    remote, hits = canary
    hostile_html = f"""<html><head><link rel="stylesheet" href="{remote}/style.css">
      <style>body {{ background: url({remote}/bg.png) }}</style></head><body>
      <p>Hello <b>coordinators</b></p>
      <script>window.pwned = 'script'; fetch('{remote}/script');</script>
      <img src="{remote}/pixel.png" onerror="window.pwned='onerror'">
      <img src="x" onerror="window.pwned='onerror2'">
      <a id="js" href="javascript:window.pwned='link'">click me</a>
      <iframe src="{remote}/frame"></iframe>
      <div style="background-image: url({remote}/div.png)" onmouseover="window.pwned='hover'">hover</div>
      <svg onload="window.pwned='svg'"><image href="{remote}/svg.png"/></svg>
      <form action="{remote}/form"><input name="q"><button>Go</button></form>
      <a href="{remote}/ok-link">a normal link</a>
    </body></html>"""
    hostile_text = "Hi <script>window.pwned='text'</script><img src=x onerror=\"window.pwned='text-img'\">"
    app_id = make_application("SWIG", name="<b>Eve</b> <script>window.pwned='name'</script>",
                              body_text=hostile_text, body_html=hostile_html,
                              attachments=[("evil.html", "text/html", b"<script>window.pwned='attachment'</script>")])
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in(page, "swig@example.org")

    page.goto(f"/applications/{app_id}")
    assert "<script>window.pwned='text'</script>" in page.locator("pre.email-text").inner_text()
    assert "<b>Eve</b>" in page.get_by_role("heading", level=1).inner_text()  # shown as text, not markup
    page.get_by_role("link", name="Show the formatted (HTML) version, cleaned").click()
    html_box = page.locator(".email-html")
    assert "Hello coordinators" in html_box.inner_text()
    assert html_box.locator("script, img, iframe, svg, form, style, link, [onerror], [style]").count() == 0
    assert html_box.locator("a#js").count() == 0 or html_box.locator("a#js").get_attribute("href") is None
    assert html_box.get_by_role("link", name="a normal link").get_attribute("rel") == "noopener noreferrer nofollow"
    page.get_by_text("click me").click()
    page.get_by_text("hover").hover()
    page.wait_for_timeout(300)  # give any injected handler a chance to run

    assert page.evaluate("window.pwned") is None
    assert dialogs == []
    assert hits == []
    assert not [u for u in requests if not u.startswith(page.url.split("/applications")[0])]
    # The HTML attachment is offered as a download, never rendered.
    with page.expect_download() as info:
        page.get_by_role("link", name="evil.html").click()
    assert info.value.suggested_filename == "evil.html"
    assert page.evaluate("window.pwned") is None
