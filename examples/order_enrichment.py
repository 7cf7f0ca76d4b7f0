"""Joins: enrich orders with customer records, and flag payments that match no order within 10 minutes.

Three topics, all on the embedded broker:

- `customers` (key: customer id) is read as a table: the latest record per customer.
- `orders` (key: order id, value: the order with its customer id).
- `payments` (key: order id, value: the payment).

The app
- re-keys each order by its customer and joins it with the customer's current record (a stream-table join: a
  customer update emits nothing, later orders see it) -> `enriched-orders`;
- left-joins each payment with the orders of the same order id within 10 minutes before or after it (a
  stream-stream join on event time); a payment that found no order is emitted once the window and its grace
  have passed on stream time, with no order -> `unmatched-payments`.

    python examples/order_enrichment.py            # demo: sample customers, orders and payments; prints, exits
    python examples/order_enrichment.py worker     # a long-running worker (Ctrl-C to stop)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import timedelta

import streams


@dataclass
class Customer:
    name: str
    tier: str


@dataclass
class Order:
    customer: str
    amount: float


@dataclass
class Payment:
    amount: float


def build(app: streams.App) -> streams.App:
    # One partition keeps the demo's stream time simple: a join's stream time is per partition (task), and windows
    # close as records arrive on that partition. Joined topics must have the same partition count (co-partitioned).
    customers = app.topic("customers", key_type=str, value_type=Customer, partitions=1)
    orders = app.topic("orders", key_type=str, value_type=Order, partitions=1)
    payments = app.topic("payments", key_type=str, value_type=Payment, partitions=1)
    enriched = app.topic("enriched-orders", key_type=str)
    unmatched = app.topic("unmatched-payments", key_type=str)

    # Stream-table: orders re-keyed by customer (repartitioned automatically) meet the customer's current record.
    (app.stream(orders)
        .map(lambda order_id, o: (o.customer, {"order": order_id, "amount": o.amount}))
        .left_join(app.table(customers),
                   lambda o, c: {**o, "customer": c.name if c else None, "tier": c.tier if c else "unknown"},
                   name="orders-with-customers")
        .to(enriched))

    # Stream-stream: a payment and its order within 10 minutes of each other (one minute of grace for late
    # records); payments without an order come out with order None once that time has passed.
    (app.stream(payments)
        .left_join(app.stream(orders), lambda p, o: {"paid": p.amount, "order": o.amount if o else None},
                   streams.JoinWindows(timedelta(minutes=10), grace=timedelta(minutes=1)),
                   name="payments-with-orders")
        .filter(lambda order_id, v: v["order"] is None)
        .to(unmatched))
    return app


app = build(streams.App("shop-joins"))  # no broker given: an embedded broker under ./.streams/shop-joins

MINUTE = 60_000


def demo_records() -> list[tuple[str, str, object, int]]:
    """(topic, key, value, event time ms): customers first, orders and payments over half an hour."""
    t0 = 1_700_000_000_000
    records = [("customers", "c1", Customer("Ada", "gold"), t0), ("customers", "c2", Customer("Bob", "basic"), t0)]
    for i in range(6):
        records.append(("orders", f"o{i}", Order(f"c{1 + i % 3}", 10.0 * (i + 1)), t0 + i * 5 * MINUTE))
    records += [
        ("payments", "o0", Payment(10.0), t0 + 2 * MINUTE),     # 2 minutes after its order: matched
        ("payments", "o1", Payment(20.0), t0 + 30 * MINUTE),    # 25 minutes after its order: unmatched
        ("payments", "o9", Payment(99.0), t0 + 12 * MINUTE),    # no such order: unmatched
        ("payments", "o4", Payment(50.0), t0 + 21 * MINUTE),    # 1 minute after its order: matched
        ("payments", "x", Payment(0.0), t0 + 60 * MINUTE),      # moves stream time past the windows
    ]
    return records


def demo() -> None:
    sample = demo_records()
    seen = {"enriched": 0, "unmatched": 0}

    @app.task
    async def send_records():
        for topic, key, value, ts in sample:
            await app.send(topic, key=key, value=value, timestamp_ms=ts)

    @app.agent("enriched-orders")
    async def show_orders(stream):
        async for event in stream.events():
            seen["enriched"] += 1
            o = event.value
            print(f"order {o['order']}: {o['amount']:.2f} by {o['customer'] or 'unknown customer'} ({o['tier']})",
                  flush=True)

    @app.agent("unmatched-payments")
    async def show_unmatched(stream):
        async for event in stream.events():
            seen["unmatched"] += 1
            print(f"payment for {event.key}: {event.value['paid']:.2f} matches no order within 10 minutes",
                  flush=True)

    @app.timer(0.2)
    async def stop_when_done():
        if seen["enriched"] >= 6 and seen["unmatched"] >= 2:
            app.stop_worker()

    app.run()


if __name__ == "__main__":
    if len(sys.argv) == 1:
        demo()
    else:
        app.main()
