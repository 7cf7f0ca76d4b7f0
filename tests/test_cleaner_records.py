"""The cleaner's record readers (aiokafka's C reader for keys and offsets, a length-only walk for byte spans) agree
with the broker's own record decoder on every codec."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from broker_embedded.log.batch import parse_header
from broker_embedded.log.cleaner_batch import read_records, record_spans, records_body
from broker_embedded.log.records import build_batch, iter_records

_RECORD = st.tuples(st.one_of(st.none(), st.binary(max_size=20)), st.one_of(st.none(), st.binary(max_size=300)),
                    st.lists(st.tuples(st.text(max_size=5), st.one_of(st.none(), st.binary(max_size=5))), max_size=2),
                    st.integers(0, 2_000_000_000_000))


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(_RECORD, min_size=1, max_size=40), st.sampled_from([0, 1, 2, 3, 4]), st.integers(0, 10**6))
def test_cleaner_readers_agree_with_the_decoder(records, codec, base_offset):
    raw = build_batch(records, attributes=codec, base_offset=base_offset)
    h = parse_header(raw)
    body = records_body(raw, h)
    expected = list(iter_records(raw, h))
    got = [(r.offset, r.key, r.value, r.timestamp) for r in read_records(raw, h, body)]
    assert got == [(r.offset, r.key, r.value, r.timestamp) for r in expected]
    spans = record_spans(body, h.record_count)
    assert len(spans) == len(records) and spans[0][0] == 0 and spans[-1][1] == len(body)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
