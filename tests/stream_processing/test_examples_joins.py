"""examples/order_enrichment.py: orders enriched with customers (stream-table) and payments that match no order
within 10 minutes (stream-stream left join), run as a user runs it, and its topology through the TestDriver.

Expected outputs are worked out here from the documented rules (a stream-table join sees the table as it is when
the stream record arrives; a left stream-stream join emits an unmatched record once stream time passes its time +
window after + grace), not copied from a run.
"""

from __future__ import annotations

from pathlib import Path

import streams
from streams.testing import TestDriver
from test_examples_state import load_example, run_example

MINUTE = 60_000


def test_the_demo_prints_enriched_orders_and_the_two_unmatched_payments(tmp_path: Path):
    lines = run_example("order_enrichment", tmp_path)
    assert sorted(line for line in lines if line.startswith("payment")) == [
        "payment for o1: 20.00 matches no order within 10 minutes",   # 25 minutes after its order
        "payment for o9: 99.00 matches no order within 10 minutes",   # no order o9
    ]
    assert sorted(line for line in lines if line.startswith("order")) == [
        "order o0: 10.00 by Ada (gold)", "order o1: 20.00 by Bob (basic)",
        "order o2: 30.00 by unknown customer (unknown)", "order o3: 40.00 by Ada (gold)",
        "order o4: 50.00 by Bob (basic)", "order o5: 60.00 by unknown customer (unknown)",
    ]


def test_the_joins_record_by_record():
    ex = load_example("order_enrichment")
    app = ex.build(streams.App("joins-example"))
    t0 = 1_000 * MINUTE
    with TestDriver(app) as d:
        d.pipe("orders", "o1", ex.Order("c1", 5.0), timestamp=t0)              # customer c1 not known yet
        d.pipe("customers", "c1", ex.Customer("Ada", "gold"), timestamp=t0 + 1)
        d.pipe("orders", "o2", ex.Order("c1", 7.0), timestamp=t0 + 2)          # sees Ada
        d.pipe("customers", "c1", ex.Customer("Ada", "platinum"), timestamp=t0 + 3)   # emits nothing
        d.pipe("orders", "o3", ex.Order("c1", 9.0), timestamp=t0 + 4)          # sees the update
        assert [(r.key, r.value) for r in d.read_records("enriched-orders")] == [
            ("c1", {"order": "o1", "amount": 5.0, "customer": None, "tier": "unknown"}),
            ("c1", {"order": "o2", "amount": 7.0, "customer": "Ada", "tier": "gold"}),
            ("c1", {"order": "o3", "amount": 9.0, "customer": "Ada", "tier": "platinum"}),
        ]
        # Payments: o2's within 10 minutes of its order is matched (not flagged); p-late's order is 11 minutes
        # away; "nobody" has no order. Unmatched ones wait for stream time to pass ts + 10 min + 1 min grace.
        d.pipe("payments", "o2", ex.Payment(7.0), timestamp=t0 + 9 * MINUTE)
        d.pipe("payments", "o1", ex.Payment(5.0), timestamp=t0 + 11 * MINUTE)
        d.pipe("payments", "nobody", ex.Payment(1.0), timestamp=t0 + 12 * MINUTE)
        assert d.read_records("unmatched-payments") == []
        d.pipe("payments", "tick", ex.Payment(0.0), timestamp=t0 + 22 * MINUTE + 1)   # past o1's close only
        assert [(r.key, r.value, r.timestamp) for r in d.read_records("unmatched-payments")] == [
            ("o1", {"paid": 5.0, "order": None}, t0 + 11 * MINUTE)]
        d.pipe("payments", "tick", ex.Payment(0.0), timestamp=t0 + 23 * MINUTE + 1)
        assert [(r.key, r.value) for r in d.read_records("unmatched-payments")] == [
            ("nobody", {"paid": 1.0, "order": None})]
