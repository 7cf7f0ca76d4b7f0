"""Log aggregation: raw log lines are parsed, errors re-keyed by service, and counted per service in windows of
lines by an agent that reads the repartitioned stream.

    python examples/log_aggregation.py           # demo on the embedded broker: prints error counts per service
    python examples/log_aggregation.py worker    # a long-running worker
"""

from __future__ import annotations

import random
import sys
from collections import Counter

import streams

app = streams.App("logs")

lines = app.topic("log-lines", key_type=str, value_type=str)          # "2024-05-01T10:00:00 api ERROR timeout"
errors = app.topic("log-errors", key_type=str)                         # key: service, value: {"service", "msg"}


def parse(line: str) -> dict:
    ts, service, level, msg = line.split(" ", 3)
    return {"ts": ts, "service": service, "level": level, "msg": msg}


(app.stream(lines)
    .map_values(parse)
    .filter(lambda key, entry: entry["level"] in ("ERROR", "FATAL"))
    .select_key(lambda key, entry: entry["service"])
    .repartition(name="errors-by-service")           # one service's errors on one task
    .to(errors))

totals: Counter = Counter()


@app.agent(errors)
async def count_errors(stream):
    async for batch in stream.take(50, within=0.5):
        counts = Counter(entry["service"] for entry in batch)
        totals.update(counts)
        print("errors: " + ", ".join(f"{service}={n}" for service, n in sorted(counts.items())), flush=True)


DEMO_LINES = 300


def demo() -> None:
    rng = random.Random(1)
    services = ["api", "auth", "billing"]
    sample = [f"2024-05-01T10:00:{i % 60:02d} {rng.choice(services)} {rng.choice(['INFO', 'INFO', 'ERROR'])} msg{i}"
              for i in range(DEMO_LINES)]
    expected = Counter(line.split(" ")[1] for line in sample if " ERROR " in line)

    @app.task
    async def send_lines():
        for i, line in enumerate(sample):
            await lines.send(key=f"host{i % 4}", value=line)

    @app.timer(0.1)
    async def stop_when_done():
        if totals == expected and not app.is_stopping:
            print("total errors per service: " + ", ".join(f"{s}={n}" for s, n in sorted(totals.items())),
                  flush=True)
            app.stop_worker()

    app.run()


if __name__ == "__main__":
    if len(sys.argv) == 1:
        demo()
    else:
        app.main()
