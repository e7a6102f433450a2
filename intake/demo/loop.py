"""A private asyncio event loop in a daemon thread, for the demo's servers.

The worker and the CLI are synchronous; the demo's IMAP server (pymap) and SMTP sink
(aiosmtpd) are asyncio servers. Both run on this one loop so the caller gets a plain
blocking interface: `call(coro)` runs a coroutine there and returns its result.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")

# Starting or stopping a loopback server takes milliseconds; this only guards against a
# wedged loop hanging `intake run` forever at start or exit.
_CALL_TIMEOUT = 30.0


class BackgroundLoop:
    """An event loop running in its own daemon thread until `close()`."""

    def __init__(self, name: str = "intake-demo") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = _CALL_TIMEOUT) -> T:
        """Run `coro` on the loop and wait for its result (exceptions propagate)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def close(self) -> None:
        """Cancel whatever still runs (open client connections), stop and join the thread."""
        if self._loop.is_closed():
            return
        try:
            self.call(_cancel_all_tasks())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(_CALL_TIMEOUT)
            self._loop.close()


async def _cancel_all_tasks() -> None:
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    # Let cancelled connection handlers run their cleanup (closing their sockets).
    await asyncio.gather(*tasks, return_exceptions=True)
