"""Which input offsets may be committed: only those whose every record has been fully processed.

Records of one partition arrive in units (one `getmany()` slice). A unit is done when the DSL processed it (at once)
and every agent chunk cut from it has been processed. The committable offset of a partition is the end of the
longest prefix of done units, so with `concurrency > 1` a fast actor can never commit past a record a slow actor still
holds (Faust issue #606).
"""

from __future__ import annotations

from collections import deque

__all__ = ["OffsetTracker", "Unit"]


class Unit:
    """A contiguous run of one partition's records: done when `pending` reaches zero."""

    __slots__ = ("tp", "end", "pending")

    def __init__(self, tp, end: int, pending: int = 0) -> None:
        self.tp = tp
        self.end = end          # the offset after the unit's last record
        self.pending = pending  # agent chunks still holding records of this unit

    def done(self) -> None:
        self.pending -= 1


class OffsetTracker:
    """Per partition, the units in offset order; `committable()` pops the done prefix."""

    def __init__(self) -> None:
        self._units: dict = {}
        self._committable: dict = {}

    def add(self, tp, end: int, pending: int = 0) -> Unit:
        unit = Unit(tp, end, pending)
        self._units.setdefault(tp, deque()).append(unit)
        return unit

    def committable(self) -> dict:
        """{tp: offset} for partitions that advanced since the last call (offset = next record to read)."""
        out, self._committable = self._committable, {}
        for tp, units in self._units.items():
            end = None
            while units and units[0].pending <= 0:
                end = units.popleft().end
            if end is not None:
                out[tp] = end
        return out

    def restore(self, offsets: dict) -> None:
        """Put back offsets that `committable()` returned but could not be committed, unless newer ones exist."""
        for tp, end in offsets.items():
            if tp not in self._committable or self._committable[tp] < end:
                self._committable[tp] = end

    def outstanding(self, tps=None) -> int:
        """How many units are still waiting for agents (in `tps`, or anywhere)."""
        return sum(1 for tp, units in self._units.items() if tps is None or tp in tps
                   for u in units if u.pending > 0)

    def forget(self, tps) -> None:
        """Drop partitions this worker no longer owns; their unfinished records will be read again elsewhere."""
        for tp in tps:
            self._units.pop(tp, None)
            self._committable.pop(tp, None)
