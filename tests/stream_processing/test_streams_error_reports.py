"""What a user sees when their code fails on a record: the traceback (their file and line) once, where the record
was, and what the policy did with it."""

from __future__ import annotations

import logging

import pytest

import streams
from streams.testing import TestDriver


def explode(v):
    if v == "bad":
        raise ValueError(f"cannot handle {v!r}")   # the line the log must point at
    return v


EXPLODE_LINE = explode.__code__.co_firstlineno + 2


@pytest.mark.parametrize("policy, action", [("skip", "skipped (on_error='skip')"),
                                            ("dead_letter", "sent to errs-dead-letter")])
def test_a_failing_record_is_logged_with_its_traceback_once(caplog, policy, action):
    app = streams.App("errs", on_error=policy)
    src = app.topic("in", key_type=str, value_type=str, partitions=1)
    app.stream(src).map_values(explode).to("out")
    with caplog.at_level(logging.ERROR, logger="streams"), TestDriver(app) as driver:
        for i, v in enumerate(["ok", "bad", "ok", "bad", "bad"]):
            driver.pipe("in", str(i), v)
        assert driver.read_values("out") == ["ok", "ok"]
        if policy == "dead_letter":
            assert [r.value for r in driver.read_records("errs-dead-letter")] == [b"bad"] * 3  # the raw bytes (str serde)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage().split(":")[0] for r in errors] == [
        f"record in[0]@{o} failed; {action}" for o in (1, 3, 4)]
    with_traceback = [r for r in errors if r.exc_info]
    assert len(with_traceback) == 1
    text = caplog.text
    assert f'{__file__}", line {EXPLODE_LINE}, in explode' in text
    assert text.count("Traceback") == 1 and "(traceback logged before)" in text


def test_fail_policy_logs_the_traceback_and_stops(caplog):
    app = streams.App("errs2")
    src = app.topic("in", key_type=str, value_type=str, partitions=1)
    app.stream(src).map_values(explode).to("out")
    with caplog.at_level(logging.ERROR, logger="streams"), TestDriver(app) as driver:
        with pytest.raises(streams.ProcessingError, match=r"partition 0, offset 0\): ValueError: cannot handle"):
            driver.pipe("in", "k", "bad")
    assert "the worker stops (on_error='fail')" in caplog.text and caplog.text.count("Traceback") == 1
