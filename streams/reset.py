"""Resetting an app so that it processes its input again, like Kafka Streams' application reset tool.

`reset_app(app, bootstrap, target)`:

1. refuses while the app's consumer group (`<app id>`) has members, or while a local worker holds its state
   directory: offsets committed under a running worker would be overwritten by its next commit;
2. moves the group's committed offsets on the app's input topics (the external source topics of its topology) to
   the earliest offset, the latest, or the first offset at or after a timestamp (ListOffsets by timestamp; where no
   record is that recent, the end);
3. deletes the app's internal topics: those the broker lists as `<app id>-...-repartition` or `...-changelog`
   (agents declare theirs while running, so the compiled topology does not name them all) and those the topology
   names. The broker forgets the group's offsets of a deleted topic, as Kafka does;
4. deletes the app's local state, `<workdir>/state`.

Output topics and the dead-letter topic are left alone: they are the app's results, not its internal state.
With `dry_run` it reports the same plan and changes nothing. `embedded_bootstrap(app)` finds (or starts) the
embedded broker of an app that has no broker URL.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, Callable

from .errors import StreamsError

if TYPE_CHECKING:
    from .app import App

__all__ = ["ResetError", "ResetTarget", "ResetPlan", "reset_app", "embedded_bootstrap", "parse_duration"]

INTERNAL_SUFFIXES = ("-repartition", "-changelog")
IDLE_GROUP_STATES = ("Empty", "Dead", "")


class ResetError(StreamsError):
    """The reset cannot be done (the app is running, the broker is held by another process): nothing was changed."""


@dataclass(frozen=True)
class ResetTarget:
    """Where input offsets go: `kind` is "earliest", "latest" or "timestamp" (then `timestamp_ms`)."""

    kind: str = "earliest"
    timestamp_ms: int | None = None

    def __str__(self) -> str:
        if self.kind != "timestamp":
            return self.kind
        when = datetime.fromtimestamp(self.timestamp_ms / 1000).astimezone().isoformat(timespec="milliseconds")
        return f"the first record at or after {when}"

    @classmethod
    def at_datetime(cls, text: str) -> "ResetTarget":
        """ISO 8601, e.g. 2024-05-01T12:00:00Z or 2024-05-01T14:00:00+02:00; without a zone, local time."""
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"bad datetime {text!r}: use ISO 8601, e.g. 2024-05-01T12:00:00Z") from None
        return cls("timestamp", int(when.timestamp() * 1000))

    @classmethod
    def ago(cls, text: str, now: float | None = None) -> "ResetTarget":
        """A duration back from now: ISO 8601 (PT1H, P1DT12H) or short (90s, 15m, 2h, 1d)."""
        seconds = parse_duration(text)
        return cls("timestamp", int(((time.time() if now is None else now) - seconds) * 1000))


_ISO_DURATION = re.compile(r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?"
                           r"(?:(\d+(?:\.\d+)?)S)?)?$", re.IGNORECASE)
_SHORT_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")


def parse_duration(text: str) -> float:
    """Seconds in `text`: ISO 8601 (P1D, PT1H30M, PT0.5S) or a number with ms/s/m/h/d (90s, 15m)."""
    t = text.strip()
    m = _ISO_DURATION.match(t)
    if m and t.upper() not in ("P", "PT") and not t.upper().endswith("T"):
        d, h, mi, s = (float(x) if x else 0.0 for x in m.groups())
        return timedelta(days=d, hours=h, minutes=mi, seconds=s).total_seconds()
    m = _SHORT_DURATION.match(t)
    if m:
        return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    raise ValueError(f"bad duration {text!r}: use ISO 8601 (PT1H, P1D) or 90s, 15m, 2h, 1d")


@dataclass
class ResetPlan:
    """What a reset does (or did): offsets per input partition, topics to delete, the state directory."""

    bootstrap: str | None
    target: ResetTarget
    offsets: dict[tuple[str, int], tuple[int | None, int]] = field(default_factory=dict)  # (old, new)
    missing_inputs: list[str] = field(default_factory=list)
    internal_topics: list[str] = field(default_factory=list)
    state_dir: Path | None = None


async def _group_members(admin, group: str) -> tuple[str, int]:
    """(state, member count) of a consumer group."""
    for resp in await admin.describe_consumer_groups([group]):
        for g in resp.groups:
            # (error_code, group_id, state, protocol_type, protocol, members[, authorized_operations])
            error_code, group_id, state, members = g[0], g[1], g[2], g[5]
            if group_id == group:
                if error_code:
                    from aiokafka.errors import for_code
                    raise for_code(error_code)(f"cannot describe group {group!r}")
                return state, len(members)
    return "", 0


def _locked_state(state_dir: Path) -> int | None:
    """The pid of a local process holding the app's state directory (or a slot of it), if one does."""
    from broker_embedded import is_locked, read_holder
    if not state_dir.is_dir():
        return None
    for lock in [state_dir / ".lock", *state_dir.glob("*/.lock"), *state_dir.glob("*/*/.lock")]:
        if lock.exists() and is_locked(lock.parent):
            return read_holder(lock.parent).get("pid", -1)
    return None


async def reset_app(app: "App", bootstrap: str | None, target: ResetTarget, *, dry_run: bool = False,
                    report: Callable[[str], None] = print) -> ResetPlan:
    """Reset `app` on the broker at `bootstrap` (None: there is no broker data, only local state) to `target`.

    Raises ResetError, changing nothing, while the group has active members or a local worker holds the state.
    Each step is reported through `report` as it is done ("would ..." under `dry_run`).
    """
    state_dir = Path(app.workdir) / "state"
    plan = ResetPlan(bootstrap, target, state_dir=state_dir if state_dir.exists() else None)
    if bootstrap is not None:
        await _plan_on_broker(app, bootstrap, plan)  # refuses while the group has members
    pid = _locked_state(state_dir)  # a local worker that has not joined the group (yet)
    if pid is not None:
        raise ResetError(f"a worker of app {app.id!r} (process {pid}) holds the state directory {str(state_dir)!r}: "
                         "stop it first")
    verb = (lambda done, would: would) if dry_run else (lambda done, would: done)
    report(f"{'dry run: nothing will be changed; ' if dry_run else ''}resetting app {app.id!r} (group {app.id!r}) "
           f"on {bootstrap or 'no broker (no embedded broker data yet)'} to {target}")
    if bootstrap is not None:
        if not plan.offsets:
            report("no input topics with partitions on the broker")
        for (topic, p), (old, new) in sorted(plan.offsets.items()):
            report(f"{verb('reset', 'would reset')} offset of {topic}[{p}] from "
                   f"{'none' if old is None else old} to {new}")
        for topic in plan.missing_inputs:
            report(f"input topic {topic} does not exist on the broker: nothing to reset")
        if not dry_run:
            await _apply_on_broker(app, bootstrap, plan)
        for topic in plan.internal_topics:
            report(f"{verb('deleted', 'would delete')} internal topic {topic}")
        if not plan.internal_topics:
            report("no internal topics to delete")
    if plan.state_dir is not None:
        if not dry_run:
            shutil.rmtree(plan.state_dir)
        report(f"{verb('deleted', 'would delete')} local state {plan.state_dir}")
    else:
        report(f"no local state under {state_dir}")
    return plan


async def _plan_on_broker(app: "App", bootstrap: str, plan: ResetPlan) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient
    from .runtime.topics import existing_partition_counts
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=f"{app.id}-reset")
    await admin.start()
    try:
        state, members = await _group_members(admin, app.id)
        if members or state not in IDLE_GROUP_STATES:
            raise ResetError(f"app {app.id!r} has {members} active member{'s' if members != 1 else ''} in consumer "
                             f"group {app.id!r} (state {state}): stop its workers first")
        existing = set(await admin.list_topics())
        topology = app.topology()
        named = set(topology.repartition_topics) | set(topology.changelog_topics)
        plan.internal_topics = sorted(t for t in existing if t in named or (
            t.startswith(f"{app.id}-") and t.endswith(INTERNAL_SUFFIXES)))
        inputs = topology.source_topics
        plan.missing_inputs = [t for t in inputs if t not in existing]
        committed = await admin.list_consumer_group_offsets(app.id)
        counts = await existing_partition_counts(admin, inputs)
    finally:
        await admin.close()
    inputs = [t for t in inputs if t in existing]
    if not inputs or not counts:
        return
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, client_id=f"{app.id}-reset")
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in inputs for p in range(counts.get(t, 0))]
        if plan.target.kind == "earliest":
            new = await consumer.beginning_offsets(tps)
        else:
            new = await consumer.end_offsets(tps)
            if plan.target.kind == "timestamp":
                found = await consumer.offsets_for_times({tp: plan.target.timestamp_ms for tp in tps})
                new.update({tp: ot.offset for tp, ot in found.items() if ot is not None})
    finally:
        await consumer.stop()
    for tp in tps:
        old = committed.get(tp)
        plan.offsets[(tp.topic, tp.partition)] = (old.offset if old is not None and old.offset >= 0 else None,
                                                  new[tp])


async def _apply_on_broker(app: "App", bootstrap: str, plan: ResetPlan) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.structs import OffsetAndMetadata
    if plan.offsets:
        # A group member-less commit (generation -1), as Kafka's tools do: the broker refuses it if a worker
        # joined the group since the check above.
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=app.id, enable_auto_commit=False,
                                    client_id=f"{app.id}-reset")
        await consumer.start()
        try:
            offsets = {TopicPartition(t, p): new for (t, p), (_, new) in plan.offsets.items()}
            consumer.assign(list(offsets))
            await consumer.commit({tp: OffsetAndMetadata(off, "") for tp, off in offsets.items()})
        finally:
            await consumer.stop()
    if plan.internal_topics:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=f"{app.id}-reset")
        await admin.start()
        try:
            resp = await admin.delete_topics(plan.internal_topics)
            for name, code, *_ in resp.topic_error_codes:
                if code not in (0, 3):  # 3: already gone
                    raise ResetError(f"cannot delete internal topic {name!r}: Kafka error code {code}")
        finally:
            await admin.close()


@asynccontextmanager
async def embedded_bootstrap(app: "App", wait_for_address: float = 5.0) -> AsyncIterator[str | None]:
    """The bootstrap address of the embedded broker of `app` (which has no broker URL), for the duration.

    A live broker holding `<workdir>/broker` (a worker, or `streams worker --processes`) is used as it is; else
    this starts one on that directory and stops it afterwards. Yields None when the directory does not exist:
    the app never ran, so there is nothing on a broker to reset.
    """
    from broker_embedded import DirectoryLocked, EmbeddedBroker
    data_dir = Path(app.workdir) / "broker"
    if not data_dir.is_dir():
        yield None
        return
    running_address = getattr(EmbeddedBroker, "running_address", None)  # newer broker_embedded only
    address = running_address(str(data_dir)) if running_address else None
    if address:
        yield address
        return
    broker = EmbeddedBroker(data_dir=str(data_dir), port=None if running_address else 0,
                            group_initial_rebalance_delay_ms=0)
    try:
        await broker.start()
    except DirectoryLocked as exc:
        # Another process holds the directory; a broker publishes its address once it listens, so ask again.
        address = await _wait_for_address(running_address, data_dir, wait_for_address)
        if not address:
            raise ResetError(f"{exc}; or pass --broker kafka://HOST:PORT (its 'bootstrap' line)") from None
        broker = None
    if broker is None:
        yield address
        return
    try:
        yield broker.bootstrap_servers
    finally:
        await broker.stop()


async def _wait_for_address(running_address, data_dir: Path, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while running_address is not None and time.monotonic() < deadline:
        address = running_address(str(data_dir))
        if address:
            return address
        await asyncio.sleep(0.1)
    return None
