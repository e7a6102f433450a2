"""Queue page latency at 50,000 applications: p50/p95 over 100 requests per view.

    .venv/bin/python bench/web.py [--n 50000] [--requests 100]

Builds a fresh SQLite database (or --database-url), serves the app with waitress on a free
loopback port, signs in as a coordinator and times real HTTP requests. Prints figures only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert  # noqa: E402

from tests.support.config import write_config  # noqa: E402
from tests.web.client import WebClient  # noqa: E402

GROUPS = ("SWIG", "SDIG", "SBAMEIG", "SLGBTIG", "TRIAGE")
STATUSES = ("new", "contacted", "accepted", "declined", "withdrawn")


def build(n: int, directory: Path, database_url: str | None):  # type: ignore[no-untyped-def]
    from intake.config import load_settings
    from intake.db import make_engine, make_sessionmaker, upgrade
    from intake.models import Application
    from intake.users import add_user

    settings = load_settings(write_config(directory, mailboxes=[], database_url=database_url), env={})
    upgrade(settings["database.url"])
    sessions = make_sessionmaker(make_engine(settings["database.url"]))
    rng = random.Random(1)
    now = dt.datetime.now(dt.timezone.utc)
    rows = [{"reference": f"BLFI-{i:06d}", "group_code": "SWIG" if i % 2 else rng.choice(GROUPS),
             "status": rng.choice(STATUSES), "name": f"Person {i}", "email": f"person{i}@nhs.example",
             "job_title": "Director", "organisation": f"Trust {i % 700}", "received_at": now - dt.timedelta(minutes=i),
             "created_at": now, "updated_at": now, "status_changed_at": now} for i in range(1, n + 1)]
    with sessions.begin() as session:
        for start in range(0, n, 5000):
            session.execute(insert(Application), rows[start:start + 5000])
        add_user(session, "bench@example.org", "bench-password", role="coordinator", groups=["SWIG"],
                 known_groups=[g.code for g in settings.groups])
    return settings, sessions


def timed(client: WebClient, path: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        reply = client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert reply.status == 200, (path, reply.status)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    from intake.web import create_app
    from intake.web.serve import start_in_thread

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        settings, sessions = build(args.n, Path(tmp), args.database_url)
        print(f"built {args.n:,} applications in {time.perf_counter() - t0:.1f} s ({settings['database.url'].split(':')[0]})")
        handle = start_in_thread(settings, "127.0.0.1", 0, app=create_app(settings, sessions=sessions))
        try:
            client = WebClient(f"http://127.0.0.1:{handle.port}")
            assert client.login("bench@example.org", "bench-password").status == 302
            views = {
                "queue, first page": "/queues/SWIG",
                "queue, newest first": "/queues/SWIG?sort=received&dir=desc",
                "queue, status filter": "/queues/SWIG?status=new",
                "queue, sort by name": "/queues/SWIG?sort=name",
                "queue, search": "/queues/SWIG?q=trust+12",
                "queue, page 300": "/queues/SWIG?page=300",
                "dashboard": "/",
            }
            print(f"{'view':24} {'p50 ms':>8} {'p95 ms':>8}")
            for label, path in views.items():
                times = sorted(timed(client, path, args.requests))
                p95 = times[max(0, int(len(times) * 0.95) - 1)]
                print(f"{label:24} {statistics.median(times):8.1f} {p95:8.1f}")
        finally:
            handle.close()


if __name__ == "__main__":
    main()
