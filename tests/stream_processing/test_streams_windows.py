"""Windowed aggregations (tumbling, hopping, sliding, session) against outputs computed by hand.

Every expectation below was worked out by hand from Kafka Streams' documented semantics and then checked against
Apache Kafka Streams 4.1.1 itself (TopologyTestDriver, caching off) with the harness in tests/reference/: the
`reference` suite re-checks them on every run (test_streams_vs_kafka_streams.py::test_hand_computed_case_is_what_
kafka_streams_does), so a case here can only be wrong if Kafka Streams is.

The rules they follow (times in ms; stream time = the largest record timestamp the task has seen, never lower):
- tumbling/hopping windows are [start, start + size), starts are multiples of the advance, none start below 0;
  a window is closed once stream time >= end + grace, and a record is dropped from every window that is closed
  (a hopping record may land in some of its windows and not others);
- sliding windows are [t - difference, t] (inclusive) for each record's t, plus [t + 1, t + 1 + difference] when a
  later record falls in it; records before `difference` share the window [0, difference];
- sessions are [first ts, last ts]; a record within `gap` of a session joins it (merging the sessions it bridges);
  a session is closed once stream time >= end + gap + grace, and a record that cannot reach an open session
  starts its own; in emit-every-update mode each merged-away session is retracted with a tombstone (None);
- emit final (suppress until window closes) emits each window once, when it closes, in order of window end.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest

import streams
from streams.testing import TestDriver


@dataclass(frozen=True)
class Case:
    """A windowed aggregation over `records` ((key, value, ts) in ms) and the records it must emit, written by hand
    in Kafka Streams' order as (key, window start, window end, value)."""

    id: str
    window: dict           # as tests/reference takes it: kind and durations in ms
    aggregation: str       # count | reduce (sum) | aggregate (sum from 0)
    emit: str              # all (every update) | final (suppress until the window closes)
    records: tuple
    expected: tuple
    exact_order: bool = True   # False: one record updates several windows; only each window's own sequence counts
    min_value: int | None = None  # a filter before the grouping: keep values >= min_value


def windows_of(spec: dict):
    """Our window spec (seconds) for a harness spec (ms)."""
    # Imported here so that the cases can be read (by the reference suite) without the windowed DSL.
    from streams import HoppingWindows, SessionWindows, SlidingWindows, TumblingWindows
    s = lambda name: spec[name] / 1000  # noqa: E731
    grace = spec.get("grace", 0) / 1000
    kind = spec["kind"]
    if kind == "tumbling":
        return TumblingWindows(size=s("size"), grace=grace)
    if kind == "hopping":
        return HoppingWindows(size=s("size"), advance=s("advance"), grace=grace)
    if kind == "sliding":
        return SlidingWindows(time_difference=s("time_difference"), grace=grace)
    if kind == "session":
        return SessionWindows(inactivity_gap=s("inactivity_gap"), grace=grace)
    raise ValueError(kind)


def run_ours(window: dict, aggregation: str, emit: str, records, *, final_by: str = "suppress",
             min_value: int | None = None) -> list[tuple]:
    """Run the aggregation through our TestDriver; every record the table's stream carries, as
    (key, start, end, value). `final_by`: "suppress" (table.suppress_until_window_closes()) or "emit" (emit="final"
    on the aggregation, count only); `min_value`: filter out smaller (and None) values before grouping."""
    app = streams.App("w-" + uuid.uuid4().hex[:8])
    # One partition, as in Kafka Streams' TopologyTestDriver: one task, so one stream time for every key.
    src = app.topic("in", key_type=str, value_type=int, partitions=1)
    stream = app.stream(src)
    if min_value is not None:
        stream = stream.filter(lambda k, v: v is not None and v >= min_value)
    win = stream.group_by_key().windowed_by(windows_of(window))
    final = emit == "final"
    if aggregation == "count":
        table = win.count(emit="final") if final and final_by == "emit" else win.count()
    elif aggregation == "reduce":
        table = win.reduce(lambda a, b: a + b)
    elif aggregation == "aggregate":
        if window["kind"] == "session":
            table = win.aggregate(lambda: 0, lambda key, value, agg: agg + value, merger=lambda key, a, b: a + b)
        else:
            table = win.aggregate(lambda: 0, lambda key, value, agg: agg + value)
    else:
        raise ValueError(aggregation)
    if final and final_by == "suppress":
        table = table.suppress_until_window_closes()
    out: list[tuple] = []
    table.to_stream().foreach(lambda wk, v: out.append((wk.key, wk.start, wk.end, v)))
    with TestDriver(app) as driver:
        for key, value, ts in records:
            driver.pipe("in", key, value, timestamp=ts)
    return out


def by_window(records) -> dict[tuple, list]:
    """Each window's updates in the order they were emitted: {(key, start, end): [value, ...]}."""
    seen: dict[tuple, list] = {}
    for key, start, end, value in records:
        seen.setdefault((key, start, end), []).append(value)
    return seen


def assert_matches(case: Case, out: list[tuple]) -> None:
    if case.exact_order:
        assert out == list(case.expected)
    else:
        assert by_window(out) == by_window(case.expected)


# ---- the cases ----

# Tumbling, size 10 s, grace 5 s. Stream time: 1000, 12000, (9000 in grace: [0,10000) closes at 15000), 16000 (closes
# [0,10000)), 8000 dropped, 14000 in grace of [10000,20000), 25000 (closes [10000,20000)), 19999 dropped.
TUMBLING_RECORDS = (("k1", 1, 1_000), ("k1", 2, 12_000), ("k2", 3, 9_000), ("k1", 4, 16_000), ("k1", 5, 8_000),
                    ("k2", 6, 14_000), ("k1", 7, 25_000), ("k2", 8, 19_999))
TUMBLING = {"kind": "tumbling", "size": 10_000, "grace": 5_000}

# Hopping, size 10 s, advance 5 s, grace 2 s: a record at t is in the windows starting at multiples of 5000 in
# (t - 10000, t], none below 0. 9000 arrives at stream time 12000: [0,10000) is closed (12000 >= 12000) and
# drops it, [5000,15000) takes it. 14000 at stream time 17000: [5000,15000) closed, [10000,20000) open.
HOPPING_RECORDS = (("A", 1, 3_000), ("A", 2, 7_000), ("B", 10, 12_000), ("A", 4, 9_000), ("A", 8, 17_000),
                   ("B", 5, 14_000), ("A", 1, 30_000))
HOPPING = {"kind": "hopping", "size": 10_000, "advance": 5_000, "grace": 2_000}

# Sliding, difference 5 s, grace 2 s (a window [s, e] is closed once stream time > e + grace).
# 10000 -> [5000,10000]; 12000 -> [7000,12000] and the right window of 10000, [10001,15001]; 11000 (out of order)
# updates both, and brings its own [6000,11000] and right window [11001,16001] (holding 12000); 20000 -> [15000,20000];
# 14000 at stream time 20000: every window holding it is closed, nothing is emitted; 17000 lands in [15000,20000] and
# opens its right window [17001,22001] (holding 20000); its own [12000,17000] is already closed.
SLIDING_RECORDS = (("A", 1, 10_000), ("A", 2, 12_000), ("A", 4, 11_000), ("A", 8, 20_000), ("A", 16, 14_000),
                   ("A", 32, 17_000))
SLIDING = {"kind": "sliding", "time_difference": 5_000, "grace": 2_000}

# Sessions, gap 5 s, grace 2 s (closed once stream time >= end + 7000). 4000 extends [1000,1000] (tombstone, then
# [1000,4000]); 12000 is a new session; at stream time 12000 [1000,4000] is closed, so 8000 does not reach it
# (though 8000 - 4000 <= gap) and merges with [12000,12000] only; 2000 could only join a closed session: dropped.
SESSION_RECORDS = (("A", 1, 1_000), ("A", 2, 4_000), ("B", 4, 3_000), ("A", 8, 12_000), ("A", 16, 8_000),
                   ("B", 32, 9_000), ("A", 64, 2_000), ("A", 128, 20_000))
SESSION = {"kind": "session", "inactivity_gap": 5_000, "grace": 2_000}

# Kafka Streams' SessionWindows javadoc example (x1000): 16000 bridges [10000,12000] and [20000,20000].
BRIDGE_RECORDS = (("A", 1, 10_000), ("A", 2, 12_000), ("A", 3, 20_000), ("A", 4, 16_000), ("B", 0, 40_000))
BRIDGE = {"kind": "session", "inactivity_gap": 5_000, "grace": 10_000}

CASES = [
    Case("tumbling-count-all", TUMBLING, "count", "all", TUMBLING_RECORDS, (
        ("k1", 0, 10_000, 1), ("k1", 10_000, 20_000, 1), ("k2", 0, 10_000, 1), ("k1", 10_000, 20_000, 2),
        ("k2", 10_000, 20_000, 1), ("k1", 20_000, 30_000, 1))),
    Case("tumbling-count-final", TUMBLING, "count", "final", TUMBLING_RECORDS, (
        ("k1", 0, 10_000, 1), ("k2", 0, 10_000, 1),              # at 16000
        ("k1", 10_000, 20_000, 2), ("k2", 10_000, 20_000, 1))),  # at 25000; [20000,30000) is still open
    Case("tumbling-aggregate-all", TUMBLING, "aggregate", "all", TUMBLING_RECORDS, (
        ("k1", 0, 10_000, 1), ("k1", 10_000, 20_000, 2), ("k2", 0, 10_000, 3), ("k1", 10_000, 20_000, 6),
        ("k2", 10_000, 20_000, 6), ("k1", 20_000, 30_000, 7))),
    Case("tumbling-reduce-final", TUMBLING, "reduce", "final", TUMBLING_RECORDS, (
        ("k1", 0, 10_000, 1), ("k2", 0, 10_000, 3), ("k1", 10_000, 20_000, 6), ("k2", 10_000, 20_000, 6))),

    Case("hopping-reduce-all", HOPPING, "reduce", "all", HOPPING_RECORDS, (
        ("A", 0, 10_000, 1),
        ("A", 0, 10_000, 3), ("A", 5_000, 15_000, 2),
        ("B", 5_000, 15_000, 10), ("B", 10_000, 20_000, 10),
        ("A", 5_000, 15_000, 6),                                  # 9000: only its open window
        ("A", 10_000, 20_000, 8), ("A", 15_000, 25_000, 8),
        ("B", 10_000, 20_000, 15),                                # 14000: only its open window
        ("A", 25_000, 35_000, 1), ("A", 30_000, 40_000, 1)), exact_order=False),
    Case("hopping-reduce-final", HOPPING, "reduce", "final", HOPPING_RECORDS, (
        ("A", 0, 10_000, 3),                                      # at 12000
        ("A", 5_000, 15_000, 6), ("B", 5_000, 15_000, 10),        # at 17000
        ("A", 10_000, 20_000, 8), ("B", 10_000, 20_000, 15), ("A", 15_000, 25_000, 8))),  # at 30000
    Case("hopping-count-all", HOPPING, "count", "all", HOPPING_RECORDS, (
        ("A", 0, 10_000, 1), ("A", 0, 10_000, 2), ("A", 5_000, 15_000, 1), ("B", 5_000, 15_000, 1),
        ("B", 10_000, 20_000, 1), ("A", 5_000, 15_000, 2), ("A", 10_000, 20_000, 1), ("A", 15_000, 25_000, 1),
        ("B", 10_000, 20_000, 2), ("A", 25_000, 35_000, 1), ("A", 30_000, 40_000, 1)), exact_order=False),

    Case("sliding-aggregate-all", SLIDING, "aggregate", "all", SLIDING_RECORDS, (
        ("A", 5_000, 10_000, 1),
        ("A", 10_001, 15_001, 2), ("A", 7_000, 12_000, 3),
        ("A", 10_001, 15_001, 6), ("A", 7_000, 12_000, 7), ("A", 6_000, 11_000, 5), ("A", 11_001, 16_001, 2),
        ("A", 15_000, 20_000, 8),
        ("A", 15_000, 20_000, 40), ("A", 17_001, 22_001, 8)), exact_order=False),
    Case("sliding-aggregate-final", SLIDING, "aggregate", "final", SLIDING_RECORDS + (("A", 0, 40_000),), (
        ("A", 5_000, 10_000, 1), ("A", 6_000, 11_000, 5), ("A", 7_000, 12_000, 7), ("A", 10_001, 15_001, 6),
        ("A", 11_001, 16_001, 2), ("A", 15_000, 20_000, 40), ("A", 17_001, 22_001, 8))),
    # Records earlier than the difference: 2000 and 3000 share [0,5000]; 3000 is in 2000's right window
    # [2001,7001]; 6000 joins that, and brings [1000,6000] and 3000's right window [3001,8001].
    Case("sliding-early-count-all", {"kind": "sliding", "time_difference": 5_000, "grace": 0}, "count", "all",
         (("A", 1, 2_000), ("A", 1, 3_000), ("A", 1, 6_000)), (
             ("A", 0, 5_000, 1),
             ("A", 2_001, 7_001, 1), ("A", 0, 5_000, 2),
             ("A", 2_001, 7_001, 2), ("A", 3_001, 8_001, 1), ("A", 1_000, 6_000, 3)), exact_order=False),

    Case("session-count-all", SESSION, "count", "all", SESSION_RECORDS, (
        ("A", 1_000, 1_000, 1), ("A", 1_000, 1_000, None), ("A", 1_000, 4_000, 2),
        ("B", 3_000, 3_000, 1),
        ("A", 12_000, 12_000, 1), ("A", 12_000, 12_000, None), ("A", 8_000, 12_000, 2),
        ("B", 9_000, 9_000, 1),
        ("A", 20_000, 20_000, 1)), exact_order=False),
    Case("session-count-final", SESSION, "count", "final", SESSION_RECORDS, (
        ("B", 3_000, 3_000, 1), ("A", 1_000, 4_000, 2),           # at 12000 (the tombstone is not emitted)
        ("B", 9_000, 9_000, 1), ("A", 8_000, 12_000, 2))),        # at 20000
    Case("session-aggregate-all", SESSION, "aggregate", "all", SESSION_RECORDS, (
        ("A", 1_000, 1_000, 1), ("A", 1_000, 1_000, None), ("A", 1_000, 4_000, 3),
        ("B", 3_000, 3_000, 4),
        ("A", 12_000, 12_000, 8), ("A", 12_000, 12_000, None), ("A", 8_000, 12_000, 24),
        ("B", 9_000, 9_000, 32),
        ("A", 20_000, 20_000, 128)), exact_order=False),
    Case("session-reduce-final", SESSION, "reduce", "final", SESSION_RECORDS, (
        ("B", 3_000, 3_000, 4), ("A", 1_000, 4_000, 3), ("B", 9_000, 9_000, 32), ("A", 8_000, 12_000, 24))),
    Case("session-bridge-reduce-all", BRIDGE, "reduce", "all", BRIDGE_RECORDS, (
        ("A", 10_000, 10_000, 1),
        ("A", 10_000, 10_000, None), ("A", 10_000, 12_000, 3),
        ("A", 20_000, 20_000, 3),
        ("A", 10_000, 12_000, None), ("A", 20_000, 20_000, None), ("A", 10_000, 20_000, 10),
        ("B", 40_000, 40_000, 0)), exact_order=False),
    Case("session-bridge-aggregate-final", BRIDGE, "aggregate", "final", BRIDGE_RECORDS, (
        ("A", 10_000, 20_000, 10),)),
    Case("session-bridge-count-final", BRIDGE, "count", "final", BRIDGE_RECORDS, (
        ("A", 10_000, 20_000, 4),)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hand_computed_case(case: Case):
    check(case)


@pytest.mark.parametrize("aggregation", ["count", "reduce", "aggregate"])
def test_emit_final_on_the_aggregation_is_suppress_until_window_closes(aggregation):
    """win.count(emit="final") emits what table.suppress_until_window_closes() does."""
    expected = {"count": [("k1", 0, 10_000, 1), ("k2", 0, 10_000, 1), ("k1", 10_000, 20_000, 2),
                          ("k2", 10_000, 20_000, 1)],
                "reduce": [("k1", 0, 10_000, 1), ("k2", 0, 10_000, 3), ("k1", 10_000, 20_000, 6),
                           ("k2", 10_000, 20_000, 6)]}
    expected["aggregate"] = expected["reduce"]
    assert run_ours(TUMBLING, aggregation, "final", TUMBLING_RECORDS) == expected[aggregation]
    if aggregation == "count":
        assert run_ours(TUMBLING, "count", "final", TUMBLING_RECORDS, final_by="emit") == expected["count"]


# ---- single rules, each on its own (also in RULE_CASES, which the reference suite checks against Kafka Streams) ----

# size 10 s, grace 5 s: 15000 closes [0,10000); 9999 after it is dropped, in both modes, and counts nowhere.
LATE = (("k", 1, 1_000), ("k", 1, 15_000), ("k", 1, 9_999), ("k", 1, 30_000))
LATE_ALL = Case("late-dropped-all", TUMBLING, "count", "all", LATE, (
    ("k", 0, 10_000, 1), ("k", 10_000, 20_000, 1), ("k", 30_000, 40_000, 1)))
LATE_FINAL = Case("late-dropped-final", TUMBLING, "count", "final", LATE, (
    ("k", 0, 10_000, 1), ("k", 10_000, 20_000, 1)))

# 14999 < 10000 + 5000: [0,10000) is still open and takes 9999.
IN_GRACE_FINAL = Case("in-grace-final", TUMBLING, "count", "final",
                      (("k", 1, 1_000), ("k", 1, 14_999), ("k", 1, 9_999), ("k", 1, 30_000)),
                      (("k", 0, 10_000, 2), ("k", 10_000, 20_000, 1)))

# grace 0: a record at 5000 closes [0,5000) (end exclusive), so 4999 afterwards is dropped.
NO_GRACE = {"kind": "tumbling", "size": 5_000}
AT_END = (("A", 1, 4_000), ("B", 1, 5_000), ("A", 1, 4_999), ("B", 1, 40_000))
AT_END_ALL = Case("closes-at-end-all", NO_GRACE, "count", "all", AT_END, (
    ("A", 0, 5_000, 1), ("B", 5_000, 10_000, 1), ("B", 40_000, 45_000, 1)))
AT_END_FINAL = Case("closes-at-end-final", NO_GRACE, "count", "final", AT_END, (
    ("A", 0, 5_000, 1), ("B", 5_000, 10_000, 1)))

# Stream time reaches 15000 (closing [0,10000)); 12000 afterwards does not pull it back: 9000 is still late, while
# 12000 itself lands in the open [10000,20000).
FORWARD = (("A", 1, 1_000), ("A", 1, 14_000), ("A", 1, 2_000), ("A", 1, 3_000), ("A", 1, 15_000),
           ("A", 1, 12_000), ("A", 1, 9_000), ("A", 1, 30_000))
FORWARD_ALL = Case("forward-all", TUMBLING, "count", "all", FORWARD, (
    ("A", 0, 10_000, 1), ("A", 10_000, 20_000, 1), ("A", 0, 10_000, 2), ("A", 0, 10_000, 3),
    ("A", 10_000, 20_000, 2), ("A", 10_000, 20_000, 3), ("A", 30_000, 40_000, 1)))
FORWARD_FINAL = Case("forward-final", TUMBLING, "count", "final", FORWARD, (
    ("A", 0, 10_000, 3), ("A", 10_000, 20_000, 3)))

# Key B's record at 15000 closes key A's window [0,10000) too (one partition: one task, one stream time).
SHARED_TIME_ALL = Case("shared-stream-time-all", TUMBLING, "count", "all",
                       (("A", 1, 1_000), ("B", 1, 15_000), ("A", 1, 2_000), ("B", 1, 30_000)),
                       (("A", 0, 10_000, 1), ("B", 10_000, 20_000, 1), ("B", 30_000, 40_000, 1)))

# The bridge example with count: the three retractions, then the merged session.
BRIDGE_COUNT_ALL = Case("session-bridge-count-all", BRIDGE, "count", "all", BRIDGE_RECORDS[:4], (
    ("A", 10_000, 10_000, 1),
    ("A", 10_000, 10_000, None), ("A", 10_000, 12_000, 2),
    ("A", 20_000, 20_000, 1),
    ("A", 10_000, 12_000, None), ("A", 20_000, 20_000, None), ("A", 10_000, 20_000, 4)), exact_order=False)

# A record with a null key is dropped by the aggregation, and does not move the windows' stream time: A@2000 after
# it still lands in [0,10000) (grace 0). Kafka Streams' window processors keep their own stream time, the largest
# timestamp among the records that reach them.
NULL_KEY_ALL = Case("null-key-all", NO_GRACE | {"size": 10_000}, "count", "all",
                    (("A", 1, 1_000), (None, 1, 20_000), ("A", 1, 2_000), ("A", 1, 30_000)),
                    (("A", 0, 10_000, 1), ("A", 0, 10_000, 2), ("A", 30_000, 40_000, 1)))
# The same through a filter: the record at 20000 is filtered out before the grouping, so it closes nothing.
FILTERED_FINAL = Case("filtered-out-final", NO_GRACE | {"size": 10_000}, "count", "final",
                      (("A", 5, 1_000), ("A", 1, 20_000), ("A", 5, 2_000), ("B", 5, 30_000)),
                      (("A", 0, 10_000, 2),), min_value=3)
FILTERED_SESSION_ALL = Case("filtered-out-session-all", {"kind": "session", "inactivity_gap": 5_000}, "count", "all",
                            (("A", 5, 1_000), ("A", 1, 20_000), ("A", 5, 2_000), ("B", 5, 30_000)),
                            (("A", 1_000, 1_000, 1), ("A", 1_000, 1_000, None), ("A", 1_000, 2_000, 2),
                             ("B", 30_000, 30_000, 1)), exact_order=False, min_value=3)

# Sessions, gap 5 s, grace 2 s: at stream time 8000 = 1000 + gap + grace, [1000,1000] is closed (final mode emits it
# then), so 5000, though within the gap of both, merges with [8000,8000] only and leaves the closed session alone.
CLOSED = {"kind": "session", "inactivity_gap": 5_000, "grace": 2_000}
CLOSED_RECORDS = (("A", 1, 1_000), ("A", 1, 8_000), ("A", 1, 5_000), ("B", 1, 40_000))
CLOSED_SESSION_ALL = Case("closed-session-not-merged-all", CLOSED, "count", "all", CLOSED_RECORDS, (
    ("A", 1_000, 1_000, 1), ("A", 8_000, 8_000, 1), ("A", 8_000, 8_000, None), ("A", 5_000, 8_000, 2),
    ("B", 40_000, 40_000, 1)), exact_order=False)
CLOSED_SESSION_FINAL = Case("closed-session-not-merged-final", CLOSED, "count", "final", CLOSED_RECORDS, (
    ("A", 1_000, 1_000, 1), ("A", 5_000, 8_000, 2)))

# Sessions, gap 3 s, grace 0: 4000 is exactly one gap after [1000,1000] (the gap is inclusive) and it moves stream time
# to 4000; the session it joins is still open, since whether a session is closed is decided on the stream time from
# before the record (Kafka Streams' session store looks sessions up before the new record's time reaches it).
EXACT_GAP = {"kind": "session", "inactivity_gap": 3_000, "grace": 0}
EXACT_GAP_ALL = Case("session-exact-gap-no-grace-all", EXACT_GAP, "count", "all",
                     (("A", 1, 1_000), ("A", 1, 4_000)),
                     (("A", 1_000, 1_000, 1), ("A", 1_000, 1_000, None), ("A", 1_000, 4_000, 2)), exact_order=False)
EXACT_GAP_FINAL = Case("session-exact-gap-no-grace-final", EXACT_GAP, "reduce", "final",
                       (("A", 1, 1_000), ("A", 2, 4_000), ("B", 0, 10_000)), (("A", 1_000, 4_000, 3),))

RULE_CASES = [LATE_ALL, LATE_FINAL, IN_GRACE_FINAL, AT_END_ALL, AT_END_FINAL, FORWARD_ALL, FORWARD_FINAL,
              SHARED_TIME_ALL, BRIDGE_COUNT_ALL, NULL_KEY_ALL, FILTERED_FINAL, FILTERED_SESSION_ALL,
              CLOSED_SESSION_ALL, CLOSED_SESSION_FINAL, EXACT_GAP_ALL, EXACT_GAP_FINAL]


def check(case: Case) -> None:
    assert_matches(case, run_ours(case.window, case.aggregation, case.emit, case.records, min_value=case.min_value))


def test_records_later_than_grace_are_dropped_not_counted():
    check(LATE_ALL)
    check(LATE_FINAL)


def test_a_record_just_inside_grace_still_counts():
    check(IN_GRACE_FINAL)


def test_window_closes_at_its_end_when_grace_is_zero():
    check(AT_END_ALL)
    check(AT_END_FINAL)


def test_stream_time_only_moves_forward():
    check(FORWARD_ALL)
    check(FORWARD_FINAL)


def test_stream_time_is_shared_by_all_keys_of_the_task():
    check(SHARED_TIME_ALL)


def test_null_keys_are_dropped_and_do_not_move_window_time():
    check(NULL_KEY_ALL)


def test_window_time_comes_from_the_records_that_reach_the_window():
    check(FILTERED_FINAL)
    check(FILTERED_SESSION_ALL)


def test_a_closed_session_is_not_merged_into():
    check(CLOSED_SESSION_ALL)
    check(CLOSED_SESSION_FINAL)


def test_a_record_exactly_one_gap_later_joins_the_session_with_no_grace():
    check(EXACT_GAP_ALL)
    check(EXACT_GAP_FINAL)


def test_stream_time_is_per_task():
    # Two partitions: A and B hash to partition 0, D to partition 1 (Kafka's murmur2 partitioner). D's record at
    # 15000 advances only task 1's stream time, so A@2000 still lands in [0,10000); B@15000 (same task as A) then
    # closes it, and A@3000 is dropped. (Not checked against Kafka Streams: its TopologyTestDriver has one partition.)
    from aiokafka.partitioner import murmur2
    assert [(murmur2(k.encode()) & 0x7FFFFFFF) % 2 for k in "ABD"] == [0, 0, 1]
    from streams import TumblingWindows
    app = streams.App("w-" + uuid.uuid4().hex[:8])
    src = app.topic("in", key_type=str, value_type=int, partitions=2)
    table = app.stream(src).group_by_key().windowed_by(TumblingWindows(size=10.0, grace=5.0)).count()
    out = []
    table.to_stream().foreach(lambda wk, v: out.append((wk.key, wk.start, wk.end, v)))
    with TestDriver(app) as driver:
        for key, ts in [("A", 1_000), ("D", 15_000), ("A", 2_000), ("B", 15_000), ("A", 3_000)]:
            driver.pipe("in", key, 1, timestamp=ts)
    assert out == [("A", 0, 10_000, 1), ("D", 10_000, 20_000, 1), ("A", 0, 10_000, 2), ("B", 10_000, 20_000, 1)]


def test_session_merge_retracts_merged_sessions_with_tombstones():
    check(BRIDGE_COUNT_ALL)
    out = run_ours(BRIDGE, "count", "all", BRIDGE_RECORDS[:4])
    assert [r for r in out if r[3] is None] == [("A", 10_000, 10_000, None), ("A", 10_000, 12_000, None),
                                                ("A", 20_000, 20_000, None)]
    live = {w: vs[-1] for w, vs in by_window(out).items() if vs[-1] is not None}
    assert live == {("A", 10_000, 20_000): 4}


def test_windowed_key_and_timedelta_durations():
    from streams import TumblingWindows, Windowed
    app = streams.App("w-" + uuid.uuid4().hex[:8])
    src = app.topic("in", key_type=str, value_type=int, partitions=1)
    table = (app.stream(src).group_by_key()
             .windowed_by(TumblingWindows(size=timedelta(seconds=10), grace=timedelta(seconds=5))).count())
    seen = []
    table.to_stream().foreach(lambda wk, v: seen.append((wk, v)))
    with TestDriver(app) as driver:
        driver.pipe("in", "k1", 3, timestamp=12_345)
    (wk, v), = seen
    assert isinstance(wk, Windowed)
    assert (wk.key, wk.start, wk.end, v) == ("k1", 10_000, 20_000, 1)
    assert wk == Windowed("k1", 10_000, 20_000)


def test_late_records_are_counted_in_the_metrics():
    from streams.testing import TestDriver
    app = streams.App("late-metrics")
    src = app.topic("in", key_type=str, value_type=int, partitions=1)
    app.stream(src).group_by_key().windowed_by(streams.TumblingWindows(10, grace=2)).count("c")
    with TestDriver(app) as driver:
        for ts in (1_000, 13_000, 9_000, 11_999, 12_001, 2_000):
            driver.pipe("in", "k", 1, timestamp=ts)
        # stream time 13000, grace 2000: [0, 10000) closed at 12000, so 9000 and 2000 are dropped
        metrics = app.metrics()
        assert metrics["dropped-late-records-total"] == 2 and metrics["records-processed"] == 6
