"""Event sourcing: account balances projected from the account's event log, queried from the app's store.

The topic `account-events` is the source of truth: one record per deposit or withdrawal, keyed by account. The app
folds each account's events into its balance (`group_by_key().aggregate(...)`) in the store `balances`, which is
backed by the compacted changelog `bank-balances-changelog` (so a restarted worker gets it back), writes every new
balance to `account-balances`, and answers queries from the store (`app.store("balances").get(account)`).
Because the projection is a pure fold over the event log, a new app (another app id) replaying the same topic from
offset 0 builds the same balances.

    python examples/account_balances.py            # demo: embedded broker, sample events, prints the balances, exits
                                                   # (run it again: the events are appended again, balances double)
    python examples/account_balances.py worker     # a long-running worker (Ctrl-C to stop)
    python examples/account_balances.py send account-events --key acc-1 '{"kind": "deposit", "cents": 500}'
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass

import streams


@dataclass
class AccountEvent:
    kind: str       # "deposit" or "withdrawal"
    cents: int      # money as integer cents: a fold over floats would drift


def apply_event(account: str, event: AccountEvent, balance: int) -> int:
    """The projection: a balance is the sum of deposits minus withdrawals, in event order."""
    if event.kind == "deposit":
        return balance + event.cents
    if event.kind == "withdrawal":
        return balance - event.cents
    raise ValueError(f"account {account}: unknown event kind {event.kind!r}")


def build(app: streams.App) -> streams.App:
    """Declare the topics and the projection on `app` (the module's app below, or one a test makes)."""
    events = app.topic("account-events", key_type=str, value_type=AccountEvent)
    balances = app.stream(events).group_by_key().aggregate(lambda: 0, apply_event, "balances", value_serde=int)
    balances.to_stream().to(app.topic("account-balances", key_type=str, value_type=int))
    return app


app = build(streams.App("bank"))  # no broker given: an embedded broker under ./.streams/bank


def demo_events(n: int = 200, accounts: int = 5) -> list[tuple[str, AccountEvent]]:
    """(account, event) pairs: mostly deposits, some withdrawals."""
    rng = random.Random(11)
    return [(f"acc-{rng.randrange(accounts)}",
             AccountEvent(rng.choice(["deposit", "deposit", "withdrawal"]), rng.randrange(100, 10_000)))
            for _ in range(n)]


def cents(amount: int) -> str:
    return f"{'-' if amount < 0 else ''}{abs(amount) // 100}.{abs(amount) % 100:02d}"


def demo() -> None:
    """Send sample events; once the store has taken them all in, print every balance from it and stop."""
    sample = demo_events()

    @app.task
    async def send_events():
        for account, event in sample:
            await app.send("account-events", key=account, value=event)

    @app.timer(0.2)
    async def print_when_done():
        if app.is_stopping or not app.worker.assigned:
            return
        if app.worker.processed < len(sample):   # input records the worker has processed
            return
        store = app.store("balances")
        balances = dict(store.all())
        for account, balance in sorted(balances.items()):
            print(f"{account}: {cents(balance)}", flush=True)
        print(f"{len(sample)} events, {len(balances)} accounts, total {cents(sum(balances.values()))}; "
              f"acc-0 alone: {cents(store.get('acc-0', 0))}", flush=True)
        app.stop_worker()

    app.run()


if __name__ == "__main__":
    if len(sys.argv) == 1:
        demo()
    else:
        app.main()
