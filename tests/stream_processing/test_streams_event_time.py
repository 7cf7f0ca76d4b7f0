"""Event time from a field or a function the user names, instead of the record's timestamp."""

from __future__ import annotations

import pytest

import streams
from streams.testing import TestDriver


@pytest.mark.parametrize("extractor", ["ts", lambda key, value: value["ts"]])
def test_windows_use_the_event_time_the_user_names(extractor):
    app = streams.App("event-time")
    src = app.topic("readings", key_type=str, partitions=1, timestamp_extractor=extractor)
    out = []
    (app.stream(src).group_by_key().windowed_by(streams.TumblingWindows(10, grace=0)).count(emit="final")
     .to_stream().foreach(lambda wk, n: out.append((wk.key, wk.start, n))))
    with TestDriver(app) as driver:
        # the record timestamps (1_000_000 + i) say nothing; the field says 1 s, 2 s, 12 s (closing [0, 10 s))
        for i, ts in enumerate([1_000, 2_000, 12_000]):
            driver.pipe("readings", "k", {"ts": ts}, timestamp=1_000_000 + i)
        assert out == [("k", 0, 2)]
        assert driver.stream_time("readings") == 12_000


def test_a_bad_event_time_is_a_processing_error():
    app = streams.App("event-time-bad", on_error="skip")
    src = app.topic("readings", key_type=str, partitions=1, timestamp_extractor="ts")
    app.stream(src).to("copy")
    with TestDriver(app) as driver:
        driver.pipe("readings", "k", {"ts": "yesterday"})
        driver.pipe("readings", "k", {"ts": 5})
        # the bad record is skipped; the good one leaves with its event time as its timestamp
        assert [(r.value, r.timestamp) for r in driver.read_records("copy")] == [({"ts": 5}, 5)]
    with pytest.raises(ValueError, match="bad timestamp_extractor 5"):
        streams.App("x").topic("t", timestamp_extractor=5)
