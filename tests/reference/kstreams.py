"""Apache Kafka Streams as a reference: run a scenario through its TopologyTestDriver and read back what it wrote.

    from kstreams import run_kafka_streams
    out = run_kafka_streams({"window": {"kind": "tumbling", "size": 10_000, "grace": 5_000},
                             "aggregation": "count", "emit": "all"},
                            [("k1", 3, 1_000), ("k1", 4, 12_000)])
    # [WindowedResult(key='k1', start=0, end=10000, value=1, timestamp=1000), ...]

Kafka Streams 4.1.1 and kafka-streams-test-utils come from Maven Central (tests/reference/pom.xml) into
.tools/kafka-streams-libs the first time; KafkaStreamsReference.java runs as a single-file source program in one JVM
for the whole test session, reading one JSON scenario per line. Without java or mvn the caller is skipped
(pytest.skip) with the reason.

    run_join("stream-stream", "left", [("left", "a", 3, 1_000), ("right", "a", 7, 2_000)],
             window={"before": 5_000, "after": 5_000, "grace": 1_000})
    # [('a', '3|7', 2000)]

Scenario types are Java builders (see TYPES in KafkaStreamsReference.java); `run_scenario` is the generic call
(a scenario dict in, the output records as dicts out) for types added later, such as joins.
"""

from __future__ import annotations

import atexit
import json
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LIBS = ROOT / ".tools" / "kafka-streams-libs"
PROGRAM = HERE / "KafkaStreamsReference.java"
POM = HERE / "pom.xml"
NEEDED_JARS = ("kafka-streams-4.1.1.jar", "kafka-streams-test-utils-4.1.1.jar", "kafka-clients-4.1.1.jar")

__all__ = ["KafkaStreamsError", "WindowedResult", "classpath", "run_join", "run_kafka_streams", "run_scenario", "shrink"]


class KafkaStreamsError(RuntimeError):
    """Kafka Streams refused the scenario (bad parameters) or the reference program died."""


class WindowedResult(NamedTuple):
    """One record a windowed aggregation wrote: the Windowed key (key, start, end in ms), value (None: tombstone),
    and the record's timestamp."""

    key: str | None
    start: int
    end: int
    value: int | None
    timestamp: int


_lock = threading.Lock()
_process: subprocess.Popen | None = None


def classpath() -> str:
    """The classpath holding Kafka Streams and its test driver, fetched with Maven once (cached in .tools/)."""
    if not shutil.which("java"):
        pytest.skip("java (17+) is needed to run Apache Kafka Streams as the reference")
    if not all((LIBS / jar).exists() for jar in NEEDED_JARS):
        if not shutil.which("mvn"):
            pytest.skip("mvn is needed to fetch Apache Kafka Streams from Maven Central for the reference")
        res = subprocess.run(
            ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={LIBS}"],
            capture_output=True, text=True, timeout=600)
        if res.returncode != 0:
            raise KafkaStreamsError(f"mvn could not fetch Kafka Streams:\n{res.stdout}{res.stderr}")
    return str(LIBS / "*")


def _reference() -> subprocess.Popen:
    global _process
    if _process is None or _process.poll() is not None:
        cp = classpath()
        _process = subprocess.Popen(["java", "-cp", cp, str(PROGRAM)], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                                    cwd=str(ROOT))
        atexit.register(_close, _process)
    return _process


def _close(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def run_scenario(scenario: dict[str, Any]) -> list[dict[str, Any]]:
    """Run one scenario (see KafkaStreamsReference.java for its JSON) and return the output records, in order."""
    line = json.dumps(scenario, separators=(",", ":"))
    with _lock:
        process = _reference()
        try:
            process.stdin.write(line + "\n")
            process.stdin.flush()
        except BrokenPipeError:
            pass  # reported below, with what the JVM said
        out: list[dict[str, Any]] = []
        error = None
        while True:
            reply = process.stdout.readline()
            if not reply:
                process.wait(timeout=10)
                raise KafkaStreamsError(f"the Kafka Streams reference exited ({process.returncode}):\n"
                                        f"{process.stderr.read()}")
            record = json.loads(reply)
            if "done" in record:
                break
            if "error" in record:
                error = record["error"]
            else:
                out.append(record)
    if error is not None:
        raise KafkaStreamsError(f"Kafka Streams rejected the scenario: {error}")
    return out


def run_kafka_streams(scenario: dict[str, Any], records: Iterable[tuple]) -> list[WindowedResult]:
    """Pipe `records` ((key, value, timestamp_ms) each, to topic "in") through the windowed aggregation that
    `scenario` describes and return every record Kafka Streams wrote, in order.

    `scenario`: {"window": {"kind": "tumbling", "size": ms, "grace": ms} | {"kind": "hopping", "size", "advance",
    "grace"} | {"kind": "sliding", "time_difference", "grace"} | {"kind": "session", "inactivity_gap", "grace"},
    "aggregation": "count" | "reduce" (sum) | "aggregate" (sum from 0), "emit": "all" | "final", and optionally
    "min_value": n, a filter before the grouping that keeps values >= n}. Keys are strings,
    values integers; caching is off (every update is emitted) and the input has one partition.
    """
    full = {"type": "windowed-aggregation", **scenario, "records": [list(r) for r in records]}
    return [WindowedResult(r["key"], r["start"], r["end"], r["value"], r["timestamp"]) for r in run_scenario(full)]


JOIN_KINDS = ("stream-stream", "stream-table", "table-table", "fk", "stream-globaltable", "stream-joined-table")


def run_join(kind: str, join: str, records: Iterable[tuple], **params: Any) -> list[tuple[str | None, str | None, int]]:
    """Pipe `records` ((topic, key, value, timestamp_ms) each, topic "left" or "right", in the order given) through
    Kafka Streams' `join` ("inner", "left" or "outer") of the given `kind` and return what it wrote to "out", as
    (key, value, timestamp) in order: the value is the joiner's "l|r" string ("null" for a missing side) or None
    (a table join's tombstone).

    `kind`: "stream-stream" (needs window={"before": ms, "after": ms, "grace": ms}), "stream-table",
    "table-table", "fk" (left value v refers to right key f"r{v // 1000}") or "stream-globaltable" (the stream's
    value v looks up right key f"r{v // 1000}") or "stream-joined-table" (topic "stream" joined with the
    table_join="inner" | "left" | "outer" | "fk-inner" | "fk-left" table join of "left" and "right", values
    "s|l|r"); versioned={"history": ms} puts the tables of stream-table, table-table and fk joins in versioned
    stores, min_value=n filters those tables (or both streams of a stream-stream join) to values >= n
    (min_value={"left": n, "right": m}: each side its own minimum, or none). Keys are strings or None,
    values integers or None; one partition per topic, caching off.
    """
    if kind not in JOIN_KINDS:
        raise ValueError(f"unknown join kind {kind!r}: one of {', '.join(JOIN_KINDS)}")
    scenario = {"type": "join", "kind": kind, "join": join, **params, "records": [list(r) for r in records]}
    return [(r["key"], r["value"], r["timestamp"]) for r in run_scenario(scenario)]


def shrink(records: tuple, differs) -> tuple:
    """The shortest prefix of `records` that still `differs`, then without each record that is not needed (the
    differential tests report the smallest input on which ours and Kafka Streams disagree)."""
    lo, hi = 1, len(records)
    while lo < hi:  # a disagreement usually persists once it appears; checked after the bisection
        mid = (lo + hi) // 2
        if differs(records[:mid]):
            hi = mid
        else:
            lo = mid + 1
    smallest = records[:lo] if differs(records[:lo]) else records
    i = 0
    while i < len(smallest):
        candidate = smallest[:i] + smallest[i + 1:]
        if candidate and differs(candidate):
            smallest = candidate
        else:
            i += 1
    return smallest
