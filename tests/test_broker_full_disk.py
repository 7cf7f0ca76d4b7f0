"""A full disk: produce answers KAFKA_STORAGE_ERROR per request, stored data still fetches, committed offsets and
transactions keep a consistent state, nothing acknowledged is lost or torn, and the broker recovers by itself once
space returns. Runs on a tmpfs of fixed size that the test mounts (root only)."""

from __future__ import annotations

import asyncio
import datetime
import os
import struct
import subprocess
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from crc32c import crc32c
from kio.index import load_payload_module
from kio.schema.errors import ErrorCode
from kio.static.constants import EntityType

from broker_embedded.log.records import build_batch
from wire import Conn
from readback import read_partition

TOPIC = "filling"
GROUP = "full-disk-group"
TXN_ID = "full-disk-txn"
PAD = b"." * 1000


@pytest.fixture
def small_disk(tmp_path, only_embedded):
    """An 8 MiB tmpfs mounted for this test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mountpoint)], capture_output=True,
                         text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def _fill(path: Path, chunk: int) -> int:
    """Write `chunk`-byte pieces to `path` until the disk refuses; the bytes written."""
    written = 0
    with open(path, "ab", buffering=0) as f:
        while True:
            try:
                written += f.write(b"\0" * chunk)
            except OSError:
                return written


class Raw(Conn):
    """What the broker answers, with no client retrying underneath."""

    def produce(self, values: list[bytes]) -> int:
        m = load_payload_module(0, 3, EntityType.request)
        batch = build_batch([(None, v, None, None) for v in values])
        resp = self.call((0, 3), transactional_id=None, acks=-1, timeout=datetime.timedelta(seconds=10),
                         topic_data=(m.TopicProduceData(name=TOPIC, partition_data=(
                             m.PartitionProduceData(index=0, records=batch),)),))
        return resp.responses[0].partition_responses[0].error_code

    def commit(self, offset: int) -> int:
        """A standalone OffsetCommit (no group membership); its error code."""
        m = load_payload_module(8, 2, EntityType.request)
        resp = self.call((8, 2), group_id=GROUP, generation_id_or_member_epoch=-1, member_id="",
                         retention_time=datetime.timedelta(milliseconds=-1),
                         topics=(m.OffsetCommitRequestTopic(name=TOPIC, partitions=(m.OffsetCommitRequestPartition(
                             partition_index=0, committed_offset=offset, committed_metadata=""),)),))
        return resp.topics[0].partitions[0].error_code

    def committed(self) -> int:
        m = load_payload_module(9, 7, EntityType.request)
        resp = self.call((9, 7), group_id=GROUP, require_stable=False,
                         topics=(m.OffsetFetchRequestTopic(name=TOPIC, partition_indexes=(0,)),))
        return resp.topics[0].partitions[0].committed_offset

    def init_transactional_id(self, tid: str) -> tuple[int, int]:
        """(error code, producer epoch) of InitProducerId for `tid`."""
        resp = self.call((22, 1), transactional_id=tid, transaction_timeout=datetime.timedelta(seconds=60))
        return resp.error_code, resp.producer_epoch


async def _read(bootstrap: str, topic: str, isolation: str = "read_uncommitted") -> list[bytes]:
    return [m.value for m in await read_partition(bootstrap, topic, isolation=isolation)]


async def _commit(bootstrap: str, offset: int) -> None:
    """Commit with aiokafka, which retries NOT_COORDINATOR until the broker can write again."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(TOPIC, 0)
        consumer.assign([tp])
        await consumer.commit({tp: offset})
    finally:
        await consumer.stop()


def check_partition_files(directory: Path) -> int:
    """Every segment holds whole batches with good CRCs up to its last byte, and every index entry points at one
    of them; returns the number of batches. Independent of the broker's own parser."""
    count = 0
    for log_file in sorted(directory.glob("*.log")):
        data = log_file.read_bytes()
        base = int(log_file.stem)
        starts, bases = set(), set()
        pos = 0
        while pos < len(data):
            assert pos + 61 <= len(data), f"{log_file}: a torn header at {pos}"
            first, length = struct.unpack_from(">qi", data, pos)
            end = pos + 12 + length
            assert end <= len(data), f"{log_file}: a torn batch at {pos}"
            assert struct.unpack_from(">I", data, pos + 17)[0] == crc32c(data[pos + 21 : end]), f"bad CRC at {pos}"
            starts.add(pos)
            bases.add(first - base)
            pos = end
            count += 1
        index = log_file.with_suffix(".index")
        if index.exists():
            raw = index.read_bytes()
            assert len(raw) % 8 == 0, f"{index}: a torn entry"
            for rel, position in struct.iter_unpack(">ii", raw):
                assert position in starts and rel in bases, f"{index}: entry ({rel}, {position}) points nowhere"
        time_index = log_file.with_suffix(".timeindex")
        if time_index.exists():
            raw = time_index.read_bytes()
            assert len(raw) % 12 == 0, f"{time_index}: a torn entry"
            for _ts, rel in struct.iter_unpack(">qi", raw):
                assert rel in bases, f"{time_index}: entry for relative offset {rel} points nowhere"
    return count


async def test_a_full_disk_refuses_writes_keeps_reads_and_recovers(small_disk, broker_process):
    data = small_disk / "broker"
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (3 << 20))  # freed later: the space that comes back
    broker = broker_process("--config", "segment.bytes=1048576", data_dir=data).start()
    bootstrap = broker.bootstrap_servers
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(TOPIC, 1, 1)])
    await admin.close()
    await _commit(bootstrap, 5)
    raw = Raw(bootstrap)
    assert raw.init_transactional_id("warm-up") == (ErrorCode.none, 0)  # producer ids are reserved on disk now

    # Fill the disk with the broker's own data until it refuses, then take whatever pages are left.
    acked: list[bytes] = []
    codes: list[int] = []
    n = 0
    while len(codes) < 3 and n < 100_000:
        values = [b"%07d" % (n + i) + PAD for i in range(10)]
        n += 10
        code = raw.produce(values)
        if code == ErrorCode.none:
            acked += values
        else:
            codes.append(code)
    assert codes == [ErrorCode.kafka_storage_error] * 3, codes
    assert len(acked) > 2000
    _fill(small_disk / "top-up", 4096)
    _fill(small_disk / "top-up", 1)

    # Full: writes are refused per request, the broker stays up, what is stored is served.
    # (a batch that fits in the free end of the last page of a segment would still be taken: make it bigger)
    assert raw.produce([b"refused-%d" % i + PAD for i in range(10)]) == ErrorCode.kafka_storage_error
    # New transactional ids still fit in the transaction log's last page for a while: add them until they do not.
    for i in range(1000):
        refused = f"txn-{i}"
        code, _ = raw.init_transactional_id(refused)
        if code != ErrorCode.none:
            break
    assert code == ErrorCode.not_coordinator, "what Kafka answers when it cannot write its transaction log"
    # Commits still fit in the free end of the offsets log's last page for a while: commit until they do not.
    last = 5
    for offset in range(6, 1000):
        code = raw.commit(offset)
        if code != ErrorCode.none:
            break
        last = offset
    assert code == ErrorCode.not_coordinator, "what Kafka answers when it cannot write its offsets log"
    assert raw.committed() == last, "a failed commit must not show in the coordinator's memory"
    commit = asyncio.create_task(_commit(bootstrap, 10_000))
    await asyncio.sleep(1.5)
    assert not commit.done(), "a commit cannot succeed while the offsets log cannot be written"
    assert raw.committed() == last
    assert await _read(bootstrap, TOPIC) == acked
    assert broker.proc.poll() is None

    # Space returns: everything works again, without a restart.
    filler.unlink()
    (small_disk / "top-up").unlink()
    await asyncio.wait_for(commit, 30)
    assert raw.committed() == 10_000
    # The refused id was not kept in memory: it starts now at epoch 0 (a kept one would be bumped to 1).
    assert raw.init_transactional_id(refused) == (ErrorCode.none, 0)
    tail = [b"after-%d" % i for i in range(10)]
    assert raw.produce(tail) == ErrorCode.none
    acked += tail
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    more = [b"client-%d" % i for i in range(200)]
    await asyncio.gather(*[await producer.send(TOPIC, v) for v in more])
    await producer.stop()
    acked += more
    txn = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=TXN_ID)
    await txn.start()
    async with txn.transaction():
        await txn.send("txn-out", b"committed after the disk had room again")
    await txn.stop()
    raw.close()

    # A kill and a restart: everything acknowledged, exactly once, in order; a clean tail; state kept.
    broker.kill()
    broker.start()
    assert await _read(broker.bootstrap_servers, TOPIC) == acked
    assert await _read(broker.bootstrap_servers, "txn-out", "read_committed") == [
        b"committed after the disk had room again"]
    raw = Raw(broker.bootstrap_servers)
    assert raw.committed() == 10_000
    raw.close()
    assert broker.stop() == 0
    log = broker.proc.stderr.read()
    assert "truncating" not in log and "Invalid CRC" not in log, log
    assert check_partition_files(data / f"{TOPIC}-0") > (len(acked) - len(more)) // 10
    check_partition_files(data / "__consumer_offsets-0")
    check_partition_files(data / "__transaction_state-0")
