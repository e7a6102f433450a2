"""Real renders of the dashboard, a queue and an application (desktop and phone widths).

Written to tmp_path; `INTAKE_SCREENSHOTS_DIR=docs pytest tests/web/test_screenshots.py`
refreshes the images in docs/ that the README shows.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from tests.web.conftest import sign_in

pytestmark = pytest.mark.browser

PEOPLE = [
    ("SWIG", "Amara Okafor", "Director of Nursing", "Leeds Teaching Hospitals NHS Trust", "contacted", 2),
    ("SWIG", "Helen Marsh", "Chief Operating Officer", "NHS Lancashire and South Cumbria ICB", "new", 1),
    ("SWIG", "Priya Raman", "Medical Director", "Guy's and St Thomas' NHS Foundation Trust", "new", 4),
    ("SWIG", "Joanne Fletcher", "Deputy Chief Executive", "Sheffield Children's NHS Foundation Trust", "accepted", 12),
    ("SWIG", "Rachel Adeyemi", "Director of Workforce", "NHS England – North West", "new", 20),
    ("SDIG", "Tom Hughes", "Head of Digital", "Oxford University Hospitals", "new", 3),
    ("SDIG", "Sam Patel", "Clinical Director", "Barts Health NHS Trust", "contacted", 9),
    ("SBAMEIG", "Kwame Mensah", "Director of Finance", "University Hospitals Birmingham", "new", 5),
    ("SBAMEIG", "Aisha Khan", "Chief People Officer", "Bradford Teaching Hospitals", "new", 30),
    ("SLGBTIG", "Alex Morgan", "Director of Strategy", "Royal Devon University Healthcare", "declined", 16),
    ("TRIAGE", "Chris Taylor", "Programme Lead", "NHS Kent and Medway ICB", "new", 0),
]


def test_screenshots(browser, web, make_application, tmp_path):
    out = Path(os.environ.get("INTAKE_SCREENSHOTS_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    ids = {}
    for group, name, job, org, status, days in PEOPLE:
        first = name.split()[0].lower()
        ids[name] = make_application(group, name=name, organisation=org, status=status,
                                     email=f"{first}.{name.split()[1].lower()}@nhs.example",
                                     received_at=now - dt.timedelta(days=days, hours=3),
                                     body_text=f"Dear SWIG team,\n\nI would like to join the group. I am {job} at {org}.\n\n"
                                               f"Kind regards,\n{name}\n{job}\n{org}",
                                     attachments=[("cv.pdf", "application/pdf", b"%PDF-1.4 demo")] if days == 2 else [])
    shots = {}
    context = browser.new_context(base_url=web.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, "admin@example.org")
    shots["dashboard"] = page.screenshot(path=out / "screenshot-dashboard.png", full_page=True)
    page.goto("/queues/SWIG?sort=received&dir=desc")
    shots["queue"] = page.screenshot(path=out / "screenshot-queue.png", full_page=False)
    page.goto(f"/applications/{ids['Amara Okafor']}")
    assert page.get_by_role("heading", level=1).inner_text().startswith("Amara Okafor")
    shots["application"] = page.screenshot(path=out / "screenshot-application.png", full_page=True)
    context.close()
    phone = browser.new_context(base_url=web.url, viewport={"width": 390, "height": 844}, is_mobile=True)
    page = phone.new_page()
    sign_in(page, "swig@example.org")
    page.goto("/queues/SWIG?sort=received&dir=desc")
    # On a phone the table fits the screen: no sideways scrolling for the whole page.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    shots["phone"] = page.screenshot(path=out / "screenshot-queue-phone.png", full_page=False)
    phone.close()
    for name, png in shots.items():
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000, name
