"""Sample mail for the demo mailboxes: what a programme's inboxes really receive.

Pure: `samples(now)` returns values, it touches no server. Every person, trust and
address here is invented. The set covers each path through intake: interest to each group
address, to the general address naming a group (the "SLGBY+IG" misprint, "BAME", "disabled
colleagues network"), naming two groups, an ambiguous one for TRIAGE, a plus-address, an
HTML-only message, a CV attachment, an RFC 2047 encoded name, a PA forwarding for a
director, a follow-up, a withdrawal, an out-of-office, a bounce, list mail and spam.

Message-IDs are fixed per sample, so restarting the demo against the same database
re-seeds mail that intake recognises as already stored instead of doubling the queues.
Dates are relative to `now`, within the last two days, so acknowledgements are not held
back as an old backlog.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

DOMAIN = "example.org"
SWIG, SDIG, SBAMEIG, SLGBTIG, BLFI = (f"{m}@{DOMAIN}" for m in ("swig", "sdig", "sbameig", "slgbtig", "blfi"))

# A few bytes that look like a PDF to a MIME parser; nobody will open it.
FAKE_PDF = b"%PDF-1.4\n% intake demo: not a real CV\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@dataclass(frozen=True)
class Sample:
    mailbox: str        # login of the demo mailbox the message is put in
    received: dt.datetime
    raw: bytes
    kind: str           # what intake should make of it: interest, auto_reply, bounce, ...
    groups: tuple[str, ...] = ()  # for interest: the queue(s) it should land in


def sample_messages(now: dt.datetime) -> list[tuple[str, bytes]]:
    """(mailbox username, message bytes) for every sample, oldest first."""
    return [(s.mailbox, s.raw) for s in samples(now)]


def _signature(name: str, title: str, org: str, phone: str) -> str:
    return f"\n\nKind regards,\n\n{name}\n{title}\n{org}\nTel: {phone}\n"


def _mail(n: int, minutes_ago: int, now: dt.datetime, *, sender: tuple[str, str], to: str, subject: str,
          body: str = "", html: str = "", headers: dict[str, str] | None = None) -> tuple[dt.datetime, bytes]:
    when = (now - dt.timedelta(minutes=minutes_ago)).replace(microsecond=0)
    msg = EmailMessage(policy=SMTP)  # CRLF line ends, non-ASCII names as RFC 2047 words
    msg["From"] = f"{sender[0]} <{sender[1]}>" if sender[0] else sender[1]
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = f"<demo-{n:02d}@samples.intake-demo.example>"
    for name, value in (headers or {}).items():
        msg[name] = value
    if html and not body:
        msg.set_content(html, subtype="html")
    else:
        msg.set_content(body)
    return when, msg.as_bytes()


def samples(now: dt.datetime) -> list[Sample]:
    """All demo samples, oldest first (so IMAP UIDs follow arrival time)."""
    now = now if now.tzinfo else now.replace(tzinfo=dt.timezone.utc)
    built = [_build(spec, now) for spec in _SPECS]
    return sorted(built, key=lambda s: s.received)


def _build(spec: dict, now: dt.datetime) -> Sample:
    spec = dict(spec)
    mailbox, kind, n, minutes = spec.pop("mailbox"), spec.pop("kind"), spec.pop("n"), spec.pop("minutes")
    groups = tuple(spec.pop("groups", "").split())
    special = spec.pop("special", None)
    if special is not None:
        when, raw = special(n, minutes, now)
    else:
        when, raw = _mail(n, minutes, now, **spec)
    return Sample(mailbox, when, raw, kind, groups)


def _with_cv(n: int, minutes: int, now: dt.datetime) -> tuple[dt.datetime, bytes]:
    when, raw = _mail(
        n, minutes, now, sender=("Adebayo Okonkwo", "adebayo.okonkwo@nhs.example.net"), to=SBAMEIG,
        subject="SBAMEIG expression of interest - CV attached",
        body="Hello,\n\nPlease find attached my CV in support of my expression of interest in the Senior BAME "
             "Influencers Group. I chair our trust's race equality network and would welcome the chance to "
             "contribute nationally."
             + _signature("Adebayo Okonkwo", "Deputy Director of Workforce", "Northfield Community Health NHS Trust", "0113 496 0142"))
    from email import message_from_bytes

    msg = message_from_bytes(raw, _class=EmailMessage, policy=SMTP)
    msg.add_attachment(FAKE_PDF, maintype="application", subtype="pdf", filename="Adebayo Okonkwo CV.pdf")
    msg.set_boundary(f"demo-{n:02d}-boundary")  # the default is random: samples must be reproducible
    return when, msg.as_bytes()


def _bounce(n: int, minutes: int, now: dt.datetime) -> tuple[dt.datetime, bytes]:
    when = (now - dt.timedelta(minutes=minutes)).replace(microsecond=0)
    date = format_datetime(when)
    text = f"""\
From: Mail Delivery System <MAILER-DAEMON@mail.{DOMAIN}>
To: {BLFI}
Subject: Undelivered Mail Returned to Sender
Date: {date}
Message-ID: <demo-{n:02d}@samples.intake-demo.example>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="demo-bounce-boundary"

This is a MIME-encapsulated message.

--demo-bounce-boundary
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you that your message could not be delivered to one or more
recipients.

<j.harrow@nhs.example.net>: host mx.nhs.example.net said: 550 5.1.1 User unknown

--demo-bounce-boundary
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.{DOMAIN}
Arrival-Date: {date}

Final-Recipient: rfc822; j.harrow@nhs.example.net
Original-Recipient: rfc822;j.harrow@nhs.example.net
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.nhs.example.net
Diagnostic-Code: smtp; 550 5.1.1 User unknown

--demo-bounce-boundary
Content-Type: message/rfc822

From: Building Leadership for Inclusion <{BLFI}>
To: j.harrow@nhs.example.net
Subject: Thank you for your interest in SWIG
Message-ID: <ack-demo-0001@{DOMAIN}>

--demo-bounce-boundary--
"""
    return when, text.replace("\n", "\r\n").encode("ascii")


_SPECS: tuple[dict, ...] = (
    # -- interest straight to each group address ---------------------------------------
    dict(n=1, minutes=2700, mailbox=SWIG, kind="interest", groups="SWIG", sender=("Rebecca Thornton", "rebecca.thornton@nhs.example.net"),
         to=SWIG, subject="Expression of interest - Senior Women Influencers Group",
         body="Dear SWIG team,\n\nI would like to express my interest in joining the Senior Women Influencers Group. "
              "I have led our trust's women in leadership programme for three years."
              + _signature("Rebecca Thornton", "Director of Nursing", "Harbourside University Hospitals NHS Foundation Trust", "0117 496 0381")),
    dict(n=2, minutes=2580, mailbox=SDIG, kind="interest", groups="SDIG", sender=("Gareth Pryce", "gareth.pryce@nhs.example.net"),
         to=SDIG, subject="Expression of interest - SDIG",
         body="Hello,\n\nI'm writing to register my interest in the Senior Disability Influencers Group. As a "
              "senior leader with a long-term condition I would value the chance to shape policy."
              + _signature("Gareth Pryce", "Associate Director of Estates", "Valley Mental Health NHS Trust", "029 2018 0457")),
    dict(n=3, minutes=2460, mailbox=SBAMEIG, kind="interest", groups="SBAMEIG", sender=("Priya Raman", "priya.raman@nhs.example.net"),
         to=SBAMEIG, subject="Joining SBAMEIG",
         body="Good afternoon,\n\nPlease could you add me to the list of those interested in the Senior BAME "
              "Influencers Group? I am happy to share more about my background."
              + _signature("Dr Priya Raman", "Consultant Cardiologist and Clinical Director", "Midshire Hospitals NHS Foundation Trust", "0121 496 0712")),
    dict(n=4, minutes=2340, mailbox=SLGBTIG, kind="interest", groups="SLGBTIG", sender=("Tom Hallworth", "tom.hallworth@nhs.example.net"),
         to=SLGBTIG, subject="SLGBT+IG - interested",
         body="Hi there,\n\nI saw the bulletin item about the Senior LGBT+ Influencers Group and would love to be involved."
              + _signature("Tom Hallworth", "Head of Digital Transformation", "Eastbrook Integrated Care Board", "01603 496 221")),
    dict(n=5, minutes=2200, mailbox=SWIG, kind="interest", groups="SWIG", sender=("Amara Nwosu", "amara.nwosu@nhs.example.net"),
         to=SWIG, subject="SWIG membership",
         body="Dear colleagues,\n\nMy chief executive suggested I contact you about SWIG. I would be glad to join "
              "the next session in January if there is space."
              + _signature("Amara Nwosu", "Chief Operating Officer", "Kingsmere Community Healthcare NHS Trust", "020 7946 0318")),
    dict(n=6, minutes=2050, mailbox=SDIG, kind="interest", groups="SDIG", sender=("Helen Marsh", "helen.marsh@nhs.example.net"),
         to=SDIG, subject="Interest in the disability influencers group",
         body="Hello SDIG,\n\nI am neurodivergent and lead our staff disability network. I'd like to be considered "
              "for the group."
              + _signature("Helen Marsh", "Deputy Chief People Officer", "Westmoor Teaching Hospitals NHS Trust", "0161 496 0559")),
    # -- interest to the general address, naming a group -------------------------------
    dict(n=7, minutes=1900, mailbox=BLFI, kind="interest", groups="SLGBTIG", sender=("Jordan Ellis", "jordan.ellis@nhs.example.net"),
         to=BLFI, subject="SLGBY+IG",
         body="Hello,\n\nI'd like to join the SLGBY+IG as advertised on your web page. I'm the executive sponsor "
              "for our LGBTQ+ staff network."
              + _signature("Jordan Ellis", "Director of Finance", "Riverside Acute NHS Foundation Trust", "0114 496 0874")),
    dict(n=8, minutes=1760, mailbox=BLFI, kind="interest", groups="SBAMEIG", sender=("Farah Siddiqui", "farah.siddiqui@nhs.example.net"),
         to=BLFI, subject="BAME senior leaders group",
         body="Dear team,\n\nI understand there is a group for senior BAME leaders. Please count me in; I have "
              "mentored many ethnic minority colleagues into management roles."
              + _signature("Farah Siddiqui", "Head of Midwifery", "Lowfield Teaching Hospitals NHS Trust", "0115 496 0963")),
    dict(n=9, minutes=1620, mailbox=BLFI, kind="interest", groups="SDIG", sender=("Martin Okafor", "martin.okafor@nhs.example.net"),
         to=BLFI, subject="Disabled colleagues network - senior group",
         body="Hi,\n\nOur disabled colleagues network chair mentioned the national senior group. I'm a wheelchair "
              "user and a senior manager and would like to take part."
              + _signature("Martin Okafor", "General Manager, Surgery", "Northgate Hospitals NHS Trust", "0191 496 0125")),
    dict(n=10, minutes=1500, mailbox=BLFI, kind="interest", groups="SWIG SBAMEIG", sender=("Claire Donnelly", "claire.donnelly@nhs.example.net"),
         to=BLFI, subject="SWIG and SBAMEIG",
         body="Hello,\n\nI'd like to express interest in both SWIG and SBAMEIG, if it's possible to be part of two "
              "groups."
              + _signature("Claire Donnelly", "Director of Strategy", "Coastline Ambulance Service NHS Trust", "01273 496 0402")),
    dict(n=11, minutes=1380, mailbox=BLFI, kind="interest", groups="TRIAGE", sender=("Sam Whitfield", "sam.whitfield@nhs.example.net"),
         to=BLFI, subject="Influencer groups",
         body="Hello,\n\nI heard about your influencer groups at a regional event. Which one would suit me? I'm "
              "keen to get involved in whatever way helps."
              + _signature("Sam Whitfield", "Programme Director", "Central Region Commissioning Support Unit", "0116 496 0786")),
    dict(n=12, minutes=1260, mailbox=BLFI, kind="interest", groups="SWIG", sender=("Naomi Fielding", "naomi.fielding@nhs.example.net"),
         to=f"blfi+swig@{DOMAIN}", subject="Women influencers - sign me up",
         body="Please sign me up for the women's group sessions."
              + _signature("Naomi Fielding", "Medical Director", "Hillcrest Partnership NHS Foundation Trust", "01632 960 145")),
    # -- interest in other shapes ------------------------------------------------------
    dict(n=13, minutes=1140, mailbox=SDIG, kind="interest", groups="SDIG", sender=("Deborah Kaye", "deborah.kaye@nhs.example.net"),
         to=SDIG, subject="FW: Senior Disability Influencers Group",
         body="Hello,\n\nI'm forwarding this on behalf of Dr Alan Reeve, who is keen to join. Please reply to him "
              "directly at alan.reeve@nhs.example.net.\n\nMany thanks,\nDeborah Kaye\nPA to Dr Alan Reeve\n\n"
              "---------- Forwarded message ---------\nFrom: Dr Alan Reeve <alan.reeve@nhs.example.net>\n"
              "To: Deborah Kaye <deborah.kaye@nhs.example.net>\nSubject: Senior Disability Influencers Group\n\n"
              "Deborah, could you send my expression of interest to the SDIG mailbox please? Thanks, Alan\n\n"
              "Dr Alan Reeve\nDirector of Public Health\nBrackenridge City Council and ICB"),
    dict(n=14, minutes=1020, mailbox=SLGBTIG, kind="interest", groups="SLGBTIG", sender=("Luca Bianchi", "luca.bianchi@nhs.example.net"),
         to=SLGBTIG, subject="Senior LGBT+ Influencers Group",
         html="<html><body><p>Dear SLGBT+IG team,</p><p>I would like to <b>express my interest</b> in joining the "
              "group. I lead our trust's Rainbow Badge work.</p><p>Kind regards,<br>Luca Bianchi<br>"
              "Director of Quality Improvement<br>Greenway Children's Hospital NHS Foundation Trust</p></body></html>"),
    dict(n=15, minutes=900, mailbox=SBAMEIG, kind="interest", groups="SBAMEIG", special=_with_cv),
    dict(n=16, minutes=780, mailbox=SWIG, kind="interest", groups="SWIG", sender=("Siobhán Ó Súilleabháin", "siobhan.osullivan@nhs.example.net"),
         to=SWIG, subject="Expression of interest – SWIG",
         body="A chara,\n\nI'd be delighted to join the Senior Women Influencers Group."
              + _signature("Siobhán Ó Súilleabháin", "Chief Allied Health Professions Officer", "Lakeside University Health Board", "028 9018 0664")),
    dict(n=17, minutes=660, mailbox=SDIG, kind="follow_up", sender=("Gareth Pryce", "gareth.pryce@nhs.example.net"),
         to=SDIG, subject="Re: Expression of interest - SDIG",
         headers={"In-Reply-To": "<demo-02@samples.intake-demo.example>", "References": "<demo-02@samples.intake-demo.example>"},
         body="Apologies, I meant to add that my line manager has approved the time away for the sessions.\n\nGareth"),
    dict(n=18, minutes=540, mailbox=SWIG, kind="withdrawal", sender=("Amara Nwosu", "amara.nwosu@nhs.example.net"),
         to=SWIG, subject="SWIG",
         body="Hello,\n\nUnfortunately my circumstances have changed; please remove me from the list for this year.\n\n"
              "With thanks,\nAmara Nwosu"),
    dict(n=19, minutes=420, mailbox=SBAMEIG, kind="interest", groups="SBAMEIG", sender=("Kwame Mensah", "kwame.mensah@nhs.example.net"),
         to=SBAMEIG, subject="SBAMEIG - interest from a non-executive director",
         body="Dear colleagues,\n\nAs a non-executive director with a focus on race equality, I'd like to join SBAMEIG."
              + _signature("Kwame Mensah", "Non-Executive Director", "Pennine Vale NHS Foundation Trust", "01484 496 0911")),
    dict(n=20, minutes=300, mailbox=SLGBTIG, kind="interest", groups="SLGBTIG", sender=("Alex Rowe", "alex.rowe@nhs.example.net"),
         to=SLGBTIG, subject="Joining the LGBT+ influencers group",
         body="Hi,\n\nI'm a trans woman and a senior nurse leader; I would like to add my voice to the group."
              + _signature("Alex Rowe", "Assistant Chief Nurse", "Eastbrook Hospitals NHS Trust", "01603 496 0377")),
    # -- mail that is not interest -----------------------------------------------------
    dict(n=21, minutes=240, mailbox=SWIG, kind="auto_reply", sender=("Rebecca Thornton", "rebecca.thornton@nhs.example.net"),
         to=SWIG, subject="Automatic reply: Thank you for your interest in SWIG",
         headers={"Auto-Submitted": "auto-replied", "X-Auto-Response-Suppress": "All"},
         body="Thank you for your email. I am on annual leave until Monday with limited access to email. For urgent "
              "matters please contact my PA on 0117 496 0380."),
    dict(n=22, minutes=180, mailbox=BLFI, kind="bounce", special=_bounce),
    dict(n=23, minutes=120, mailbox=BLFI, kind="list", sender=("NHS EDI Leads Network", "edi-leads@lists.example.org"),
         to="edi-leads@lists.example.org", subject="[EDI Leads] Monthly bulletin: inclusion events this quarter",
         headers={"List-Id": "NHS EDI Leads Network <edi-leads.lists.example.org>",
                  "List-Unsubscribe": "<mailto:edi-leads-leave@lists.example.org>", "Precedence": "list"},
         body="In this month's bulletin: regional inclusion events, the disability history month toolkit and a call "
              "for case studies.\n\nYou are receiving this because you subscribed to the EDI Leads Network."),
    dict(n=24, minutes=60, mailbox=BLFI, kind="spam", sender=("Prize Department", "winner@prizes.example.com"),
         to=BLFI, subject="Congratulations! You have been selected",
         headers={"X-Spam-Flag": "YES", "X-Spam-Status": "Yes, score=9.8 required=5.0"},
         body="Claim your reward today by confirming your bank details."),
    dict(n=25, minutes=20, mailbox=SDIG, kind="interest", groups="SDIG", sender=("Yusuf Demir", "yusuf.demir@nhs.example.net"),
         to=SDIG, subject="Senior Disability Influencers Group",
         body="Hello,\n\nI'm deaf and a senior manager in pathology; I would like to express interest in the group. "
              "Email is the best way to contact me."
              + _signature("Yusuf Demir", "Pathology Services Manager", "Southvale Hospitals NHS Trust", "023 8049 0612")),
)
