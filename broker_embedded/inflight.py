"""The bytes one connection may hold in memory: requests read ahead and answers not yet written.

A client may pipeline requests and leave its answers unread. Counting requests alone bounds nothing (each may be
socket.request.max.bytes long, each Fetch answer as large as its max_bytes), so the connection stops reading new
requests while what it holds (request frames not yet handled, answers not yet written) exceeds its limit. One
request is always let in when nothing is held, so a request of any allowed size is served.

An answer's size is known only once it is built, and requests are read ahead before the first of them runs; so a
request whose answer may be large (a Fetch) reserves the whole limit while it runs: nothing more is read from
that connection until it is answered (Kafka reads nothing more until any request is answered).
"""

from __future__ import annotations

import asyncio


class HeldBytes:
    """Request and response bytes held by one connection, with a limit that pauses reading."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._freed = asyncio.Event()
        self._answers: dict[asyncio.Future, int] = {}

    async def room_for(self, size: int) -> None:
        """Wait until a request of `size` bytes may be read."""
        while self.held and self.held + size > self.limit:
            self._freed.clear()
            await self._freed.wait()

    def track(self, task: asyncio.Future, size: int, reserve: int = 0) -> None:
        """`task` handles a request of `size` bytes: held (with `reserve` more for its answer) until it is done,
        then its answer is held instead until `sent(task)`."""
        size += reserve
        self.held += size
        self._answers[task] = 0

        def done(t: asyncio.Future) -> None:
            answer = 0
            if not t.cancelled() and t.exception() is None:
                answer = in_memory_size(t.result())
            if t in self._answers:
                self._answers[t] = answer
                self.held += answer
            self._give(size)

        task.add_done_callback(done)

    def sent(self, task: asyncio.Future) -> None:
        """The answer of `task` was written (or dropped)."""
        self._give(self._answers.pop(task, 0))

    def _give(self, n: int) -> None:
        self.held -= n
        if self.held <= self.limit:
            self._freed.set()


def in_memory_size(response) -> int:
    """Bytes of an answer that sit in memory: a bytes object, or the bytes parts of a list of chunks (file regions
    are sent from the page cache and hold nothing)."""
    if isinstance(response, (bytes, bytearray, memoryview)):
        return len(response)
    if isinstance(response, list):
        return sum(len(c) for c in response if isinstance(c, (bytes, bytearray, memoryview)))
    return 0
