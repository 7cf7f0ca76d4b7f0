"""Stream processing: big orders are filtered, normalised and announced (the README's first example).

    python examples/orders.py                # demo: embedded broker, sample orders, prints the big ones, exits
    python examples/orders.py worker         # a long-running worker (Ctrl-C to stop)
    python examples/orders.py topology       # the compiled topology (--format mermaid|dot)
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass

import streams


@dataclass
class Order:
    id: str
    customer: str
    amount: float


app = streams.App("shop")  # no broker given: an embedded broker under ./.streams/shop

orders = app.topic("orders", key_type=str, value_type=Order)
big = app.topic("big-orders", key_type=str, value_type=Order)

# The declarative DSL, compiled into a topology.
(app.stream(orders)
    .filter(lambda key, order: order.amount > 100)
    .map_values(lambda order: Order(order.id, order.customer.upper(), order.amount))
    .to(big))

announced: list[str] = []


# A Faust-style agent on the same runtime; what it yields goes to its sinks.
@app.agent(big)
async def notify(stream):
    async for order in stream:
        print(f"big order {order.id}: {order.customer} {order.amount:.2f}", flush=True)
        announced.append(order.id)
        yield order.id


DEMO_ORDERS = 20


def demo() -> None:
    """Send sample orders from a task, stop once every big one was announced."""
    rng = random.Random(7)
    sample = [Order(f"o{i}", rng.choice(["ada", "bob", "eve"]), round(rng.uniform(10, 250), 2))
              for i in range(DEMO_ORDERS)]
    expected = {o.id for o in sample if o.amount > 100}

    @app.task
    async def send_sample_orders():
        for order in sample:
            await orders.send(key=order.customer, value=order)

    @app.timer(0.1)
    async def stop_when_done():
        if expected <= set(announced) and not app.is_stopping:
            print(f"{len(expected)} of {len(sample)} orders were big", flush=True)
            app.stop_worker()

    app.run()


if __name__ == "__main__":
    if len(sys.argv) == 1:
        demo()
    else:
        app.main()
