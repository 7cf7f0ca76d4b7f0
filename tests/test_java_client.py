"""The Java client (kafka-clients 4.1, from Maven Central) produces and consumes against the broker unchanged."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBS = ROOT / ".tools" / "java-libs"


@pytest.fixture(scope="session")
def java_classpath() -> str:
    if not (shutil.which("java") and shutil.which("mvn")):
        pytest.skip("java and mvn are needed for the Java client test")
    if not (LIBS / "kafka-clients-4.1.1.jar").exists():
        res = subprocess.run(
            ["mvn", "-q", "-B", "-f", str(ROOT / "tests" / "java" / "pom.xml"), "dependency:copy-dependencies",
             f"-DoutputDirectory={LIBS}"], capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stdout + res.stderr
    return str(LIBS / "*")


def test_java_client_roundtrip(bootstrap, topic_name, java_classpath):
    res = subprocess.run(
        ["java", "-cp", java_classpath, str(ROOT / "tests" / "java" / "ClientRoundTrip.java"), bootstrap, topic_name],
        capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "consumed 1000" in res.stdout


def test_java_transactions(bootstrap, topic_name, java_classpath):
    """kafka-clients 4.1 uses the second-generation transaction protocol (KIP-890) when the cluster finalizes
    transaction.version 2, as Kafka 4.1 does: partitions join transactions through Produce v12+, offsets through
    TxnOffsetCommit v5, and every EndTxn (v5) bumps the producer epoch. Commits, aborts, offsets and fencing
    behave as on Kafka."""
    res = subprocess.run(
        ["java", "-cp", java_classpath, str(ROOT / "tests" / "java" / "Transactions.java"), bootstrap, topic_name],
        capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert "transaction.version 2" in lines
    # init gives epoch 0; three EndTxn v5 bump it to 3 (the first-generation protocol would leave it at 0).
    assert "epoch after 3 transactions 3 CompleteCommit" in lines, res.stdout
    assert "committed offset 5" in lines
    assert "zombie fenced" in lines
    # Transactions 1 and 3 (10 records each) and the successor's one record; nothing of the aborted one or the zombie.
    assert "read_committed 21 committed 0 other" in lines, res.stdout


def test_java_admin_cluster_calls(bootstrap, topic_name, java_classpath):
    """The Java Admin client's cluster calls answer as on a one-node Kafka 4.1 (each line was checked there):
    paged DescribeTopicPartitions, log dirs, elections, reassignments, the metadata quorum, features, config
    resources, delegation tokens refused."""
    res = subprocess.run(
        ["java", "-cp", java_classpath, str(ROOT / "tests" / "java" / "AdminCalls.java"), bootstrap, topic_name],
        capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert [line for line in res.stdout.splitlines() if not line.startswith("SLF4J")] == [
        "describeTopics partitions 3 leader true",
        "describeLogDirs sizes true true lag 0",
        "alterReplicaLogDirs other LogDirNotFoundException",
        "electLeaders PREFERRED ElectionNotNeededException",
        "electLeaders UNCLEAN ElectionNotNeededException",
        "reassign to another broker InvalidReplicaAssignmentException",
        "listPartitionReassignments 0",
        "describeMetadataQuorum leader true voters 1",
        "describeFeatures metadata.version 27",
        "updateFeatures same level ok",
        "listConfigResources topic true broker true",
        "listOffsets latest 50",
        "describeDelegationToken UnsupportedByAuthenticationException",
    ], res.stdout + res.stderr
