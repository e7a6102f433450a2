"""Realistic interest emails for benchmarks: plain and HTML, encoded names, attachments."""

from __future__ import annotations

import datetime as dt
import random
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

GROUP_ADDRESSES = {
    "SWIG": "swig@example.org",
    "SDIG": "sdig@example.org",
    "SBAMEIG": "sbameig@example.org",
    "SLGBTIG": "slgbtig@example.org",
}
FIRST = ["Aisha", "Bronwen", "Chidi", "Dorota", "Eilidh", "Fatima", "Gráinne", "Hamza", "Ines", "José", "Kwame",
         "Łucja", "Mhairi", "Nkechi", "Oisín", "Priya", "Rhodri", "Siobhán", "Tomasz", "Zoë"]
LAST = ["Adeyemi", "Brown", "Chaudhry", "Davies", "Évora", "Fernández", "Ghosh", "Hughes", "Iqbal", "Jones",
        "Kowalski", "Lindqvist", "Mensah", "Nowak", "O'Connor", "Patel", "Quinn", "Rahman", "Smith", "Williams"]
TITLES = ["Director of Nursing", "Chief Operating Officer", "Deputy Medical Director", "Head of People",
          "Associate Director of Estates", "Clinical Director, Emergency Medicine"]
TRUSTS = ["Leeds Teaching Hospitals NHS Trust", "Manchester University NHS Foundation Trust",
          "Guy's and St Thomas' NHS Foundation Trust", "Cardiff and Vale University Health Board",
          "NHS England", "Sheffield Children's NHS Foundation Trust"]


def make_corpus(n: int, *, seed: int = 7, big_every: int = 1000, attach_every: int = 10,
                now: dt.datetime | None = None) -> list[tuple[str, bytes]]:
    """n (group code, raw bytes) pairs; roughly one in `attach_every` has a 50-200 KB
    attachment and one in `big_every` a 10 MB one."""
    rng = random.Random(seed)
    now = now or dt.datetime.now(dt.timezone.utc)
    codes = list(GROUP_ADDRESSES)
    out = []
    for i in range(n):
        code = codes[i % len(codes)]
        first, last = rng.choice(FIRST), rng.choice(LAST)
        title, trust = rng.choice(TITLES), rng.choice(TRUSTS)
        msg = EmailMessage()
        local = f"{first}.{last}".lower().encode("ascii", "ignore").decode().replace("'", "") or "person"
        msg["From"] = Address(display_name=f"{first} {last}", addr_spec=f"{local}.{i}@example.nhs.uk")
        msg["To"] = GROUP_ADDRESSES[code]
        msg["Subject"] = rng.choice([f"Expression of interest: {code}", "Interested in joining",
                                     f"Joining the {code} group", "Building Leadership for Inclusion"])
        msg["Date"] = format_datetime(now - dt.timedelta(minutes=rng.randint(1, 600)))
        msg["Message-ID"] = f"<bench-{seed}-{i}@example.nhs.uk>"
        text = (f"Dear colleagues,\n\nI would like to express my interest in joining {code}. "
                f"{'I have led our staff network for several years. ' * rng.randint(1, 8)}\n\n"
                f"Kind regards,\n{first} {last}\n{title}\n{trust}\n")
        msg.set_content(text)
        if i % 3 == 0:
            msg.add_alternative(f"<html><body><p>Dear colleagues,</p><p>I would like to join <b>{code}</b>.</p>"
                                f"<p>Kind regards,<br>{first} {last}<br>{title}<br>{trust}</p></body></html>", subtype="html")
        if big_every and i % big_every == big_every - 1:
            msg.add_attachment(rng.randbytes(10 * 1024 * 1024), maintype="application", subtype="pdf", filename="portfolio.pdf")
        elif attach_every and i % attach_every == 0:
            msg.add_attachment(rng.randbytes(rng.randint(50, 200) * 1024), maintype="application", subtype="pdf", filename="cv.pdf")
        out.append((code, msg.as_bytes()))
    return out
