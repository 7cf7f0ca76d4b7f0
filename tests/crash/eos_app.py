"""The app of the exactly-once crash tests: a repartition, a windowed count, a Faust-style table in an agent, sinks.

Settings come from the environment (the tests start it as `streams worker -A eos_app:app`): APP_ID, BROKER,
WORKDIR, SRC (the input topic; keys are user ids, values {"page": ..}), and GUARANTEE.
"""

from __future__ import annotations

import os

import streams

app = streams.App(os.environ["APP_ID"], broker=os.environ["BROKER"], workdir=os.environ["WORKDIR"],
                  commit_interval=0.2, session_timeout=6.0,
                  processing_guarantee=os.environ.get("GUARANTEE", "exactly_once"))
events = app.topic(os.environ["SRC"], key_type=str, partitions=4)
page_views = app.topic(f"{app.id}-page-views", key_type=str, value_type=int, partitions=4)
user_echo = app.topic(f"{app.id}-user-echo", key_type=str, value_type=str, partitions=4)

# Repartition by page, count per page and minute (a day of grace: no record is late whatever the interleaving),
# every update to a sink: per window, the sink must hold the counts 1, 2, ..., n exactly once each.
(app.stream(events).group_by(lambda user, event: event["page"], name="by-page")
    .windowed_by(streams.TumblingWindows(60, grace=24 * 3600)).count("page-views")
    .to_stream().map(lambda wk, n: (f"{wk.key}@{wk.start}", n)).to(page_views))

# A Faust-style table in an agent: per user, the sink must hold "user:1", "user:2", ... exactly once each.
seen = app.Table("seen", default=int)


@app.agent(events, sink=[user_echo])
async def echo(stream):
    async for event in stream.events():
        seen[event.key] += 1
        yield f"{event.key}:{seen[event.key]}"
