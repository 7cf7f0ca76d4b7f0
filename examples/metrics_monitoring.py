"""Metrics monitoring: the average CPU of each host per minute, emitted once per minute when the minute is over.

Hosts send CPU samples (key: host, value: percent) stamped with the time they were measured. The app groups them
by host into tumbling one-minute windows of event time, folds each window into (sum, count), turns that into the
average, and emits each window once, when it closes (`emit="final"`), to the topic `cpu-per-minute`. A sample may
arrive late by up to `GRACE` seconds (of stream time) and still count; a later one is dropped (and logged).

Time here is event time: a minute closes when the samples' timestamps (the stream time of the task holding the
host) pass its end plus grace, not when the wall clock does. The demo's last minute therefore stays open: no
later sample closes it. (`idle_close=seconds` on the aggregation would let an idle stream's time follow the wall
clock; see docs/streams.md.)

    python examples/metrics_monitoring.py            # demo: embedded broker, four minutes of samples, prints the
                                                     # per-minute averages, shows the late sample was dropped, exits
    python examples/metrics_monitoring.py worker     # a long-running worker (Ctrl-C to stop)
    python examples/metrics_monitoring.py topology   # the compiled topology (--format mermaid|dot)
"""

from __future__ import annotations

import datetime
import random
import sys
from dataclasses import dataclass

import streams

WINDOW = 60       # seconds: one average per host and minute
GRACE = 30        # seconds of stream time a sample may arrive after its minute ended and still count


@dataclass
class MinuteAverage:
    host: str
    start: int        # window start, ms since the epoch
    average: float    # percent
    samples: int


app = streams.App("metrics")  # no broker given: an embedded broker under ./.streams/metrics

cpu_samples = app.topic("cpu-samples", key_type=str, value_type=float)
per_minute = app.topic("cpu-per-minute", key_type=str, value_type=MinuteAverage)


def add_sample(host: str, cpu: float, acc: dict) -> dict:
    return {"sum": acc["sum"] + cpu, "count": acc["count"] + 1}


(app.stream(cpu_samples)
    .group_by_key()
    .windowed_by(streams.TumblingWindows(WINDOW, grace=GRACE))
    .aggregate(lambda: {"sum": 0.0, "count": 0}, add_sample, "cpu-sums", emit="final")
    .map_values(lambda acc: {"average": round(acc["sum"] / acc["count"], 2), "samples": acc["count"]})
    .to_stream()
    .map(lambda window, avg: (window.key, MinuteAverage(window.key, window.start, avg["average"], avg["samples"])))
    .to(per_minute))

results: list[MinuteAverage] = []


@app.agent(per_minute)
async def report(averages):
    async for avg in averages:
        print(f"{avg.host:6} {clock(avg.start)}  average {avg.average:6.2f}%  over {avg.samples} samples", flush=True)
        results.append(avg)


def clock(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%H:%M:%S")


# ---- the demo's input ----

T0 = 1_714_564_800_000   # 2024-05-01T12:00:00Z, a whole minute
HOSTS = ("web-1", "web-2", "db-1")
LATE_SAMPLE = ("web-2", T0 + 40_000, 99.0)           # sent after stream time reached 12:02:30: dropped
IN_GRACE_SAMPLE = ("web-1", T0 + 50_000, 95.0)       # sent at stream time 12:01:15: counts in minute 12:00


def demo_samples() -> list[tuple[str, int, float]]:
    """(host, timestamp ms, cpu %) in the order they are sent: every 15 s from 12:00:00 to 12:04:30 (which closes
    the minute 12:03 with its 30 s of grace), plus one sample out of order within grace and one beyond it."""
    rng = random.Random(3)
    out = []
    for ts in range(T0, T0 + 4 * 60_000 + GRACE * 1000 + 1, 15_000):
        for host in HOSTS:
            out.append((host, ts, round(rng.uniform(5, 90), 1)))
        if ts == T0 + 75_000:
            out.append(IN_GRACE_SAMPLE)
        if ts == T0 + 150_000:
            out.append(LATE_SAMPLE)
    return out


def demo() -> None:
    """Send the samples from a task; stop once every closed minute of every host was reported."""
    samples = demo_samples()
    last = max(ts for _, ts, _ in samples)
    minutes = {(host, ts - ts % 60_000) for host, ts, _ in samples if ts - ts % 60_000 + 60_000 + GRACE * 1000 <= last}

    @app.task
    async def send_samples():
        for host, ts, cpu in samples:
            await cpu_samples.send(key=host, value=cpu, timestamp_ms=ts)

    @app.timer(0.1)
    async def stop_when_done():
        if len(results) >= len(minutes) and not app.is_stopping:
            host, ts, _ = LATE_SAMPLE
            sent = sum(1 for h, t, _ in samples if h == host and t - t % 60_000 == T0)
            counted = next(r.samples for r in results if r.host == host and r.start == T0)
            print(f"late sample {host}@{clock(ts)} dropped: {host} {clock(T0)} averaged {counted} of the {sent} "
                  f"samples sent", flush=True)
            print(f"minute {clock(last - last % 60_000)} is still open (it closes at stream time "
                  f"{clock(last - last % 60_000 + 60_000 + GRACE * 1000)})", flush=True)
            print(f"{len(results)} per-minute averages for {len(HOSTS)} hosts", flush=True)
            app.stop_worker()

    app.run()


if __name__ == "__main__":
    if len(sys.argv) == 1:
        demo()
    else:
        app.main()
