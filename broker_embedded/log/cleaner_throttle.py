"""The cleaner's I/O throttle: Kafka's `log.cleaner.io.max.bytes.per.second`, counted on bytes read plus bytes
written as Kafka counts them, and the points where a pass lets the event loop's thread run.

Unlike Kafka's Throttler, which checks every 300 ms and then sleeps off the whole excess at once, this one checks
every few milliseconds and sleeps in short slices: a pass that runs in a thread of the broker's process holds the
GIL while it works, so what the event loop feels is the length of the longest stretch of uninterrupted work, not
the average rate.
"""

from __future__ import annotations

import math
import time

# How much work (in seconds) runs between two checks of the rate.
CHECK_INTERVAL_S = 0.005
# Every this many records (about 0.25 ms of work) a pass looks at the clock ...
YIELD_EVERY_RECORDS = 100
# ... and after this much work it lets other threads take the GIL ...
YIELD_AFTER_S = 0.0005
# ... by sleeping this long: time.sleep(0) releases the GIL but takes it back before a waiting thread wakes up.
YIELD_S = 0.00002


class IoThrottle:
    """Sleeps the calling (worker) thread whenever the bytes it accounted for exceed `bytes_per_second`.

    `math.inf` (Kafka's default, Double.MAX_VALUE) never sleeps for the rate; either way the pass calls `records`
    every few hundred records, even inside one large batch, so that the event loop's thread gets the GIL.
    """

    def __init__(self, bytes_per_second: float = math.inf, yield_gil: bool = True) -> None:
        if not bytes_per_second > 0:
            raise ValueError(f"log.cleaner.io.max.bytes.per.second must be > 0, got {bytes_per_second}")
        self.rate = bytes_per_second
        self.yield_after = YIELD_AFTER_S if yield_gil else math.inf
        self.slept = 0.0  # seconds spent throttled, reported with the pass
        self._period_start = time.monotonic()
        self._bytes = 0
        self._yielded = self._period_start

    def account(self, nbytes: int) -> None:
        """Count `nbytes` read or written; sleep if the pass is ahead of its rate."""
        self._bytes += nbytes
        if self.rate != math.inf:
            self._check()

    def records(self) -> None:
        """Called after every batch (or YIELD_EVERY_RECORDS records): offer the GIL if the pass has worked for YIELD_AFTER_S
        since it last did, and check the rate."""
        if self.yield_after != math.inf and time.monotonic() - self._yielded >= self.yield_after:
            time.sleep(YIELD_S)
            self._yielded = time.monotonic()
        if self.rate != math.inf:
            self._check()

    def _check(self) -> None:
        now = time.monotonic()
        elapsed = now - self._period_start
        if elapsed < CHECK_INTERVAL_S:
            return
        owed = self._bytes / self.rate - elapsed
        if owed > 0:
            time.sleep(owed)
            self.slept += owed
            now = self._yielded = time.monotonic()
        self._period_start = now
        self._bytes = 0
