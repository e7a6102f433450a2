"""Login attempt limits per account and per client address (in memory, per process).

Pure apart from a lock: the caller passes the time. A key is blocked once it has
`limit` failures inside `window`; a successful login clears the account's failures.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import defaultdict, deque


class LoginLimiter:
    def __init__(self, *, per_account: int = 5, per_ip: int = 20, window: dt.timedelta = dt.timedelta(minutes=15)):
        self.limits = {"account": per_account, "ip": per_ip}
        self.window = window
        self._failures: dict[tuple[str, str], deque[dt.datetime]] = defaultdict(deque)
        self._lock = threading.Lock()

    def blocked(self, account: str, ip: str, now: dt.datetime) -> bool:
        with self._lock:
            return any(len(self._recent(key, now)) >= self.limits[key[0]] for key in self._keys(account, ip))

    def failed(self, account: str, ip: str, now: dt.datetime) -> None:
        with self._lock:
            for key in self._keys(account, ip):
                self._recent(key, now).append(now)

    def succeeded(self, account: str) -> None:
        with self._lock:
            self._failures.pop(("account", account.strip().lower()), None)

    def _keys(self, account: str, ip: str) -> tuple[tuple[str, str], ...]:
        return (("account", account.strip().lower()), ("ip", ip))

    def _recent(self, key: tuple[str, str], now: dt.datetime) -> deque[dt.datetime]:
        times = self._failures[key]
        while times and now - times[0] > self.window:
            times.popleft()
        return times
