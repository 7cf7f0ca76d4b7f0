"""ApiVersions parity with Apache Kafka 4.1.1, against the table in docs/broker.md ("API parity").

Always: this broker's answer is exactly the table's "here" column, and every row whose columns differ says why.
Under `--kafka` / KAFKA_BOOTSTRAP: Kafka's live answer is exactly the table's "Kafka 4.1.1" column, so a client-facing
difference the table does not list fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from kio.schema.errors import ErrorCode

from wire import Conn

DOC = Path(__file__).resolve().parent.parent / "docs" / "broker.md"
IN_PROGRESS = "in progress by another change"


def _rows(header: str) -> list[list[str]]:
    """The rows of the markdown table whose header line starts with `header`."""
    lines = DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _range(cell: str) -> tuple[int, int] | None:
    if cell == "—":
        return None
    low, high = cell.split("-")
    return int(low), int(high)


def _keys(cell: str) -> list[int]:
    keys = []
    for part in cell.split(","):
        low, _, high = part.strip().partition("-")
        keys += range(int(low), int(high or low) + 1)
    return keys


def api_table() -> dict[int, tuple[str, tuple | None, tuple | None, str]]:
    """key -> (name, Kafka's range, ours, why they differ)."""
    return {int(k): (name, _range(kafka), _range(here), why)
            for k, name, kafka, here, why in _rows("| Key | API | Kafka 4.1.1 | here |")}


def left_out_table() -> dict[int, tuple[tuple | None, str]]:
    """key -> (Kafka's range, why this broker does not serve it)."""
    out = {}
    for keys, _names, kafka, why in _rows("| Key | API | Kafka 4.1.1 | why left out |"):
        for k in _keys(keys):
            out[k] = (_range(kafka), why)
    return out


def _feature(cell: str) -> tuple[tuple[int, int], int | None]:
    supported, finalized = (c.strip() for c in cell.split(","))
    return _range(supported), None if finalized == "—" else int(finalized)


def feature_table() -> dict[str, tuple[tuple, tuple, str]]:
    return {name: (_feature(kafka), _feature(here), why)
            for name, kafka, here, why in _rows("| Feature | Kafka 4.1.1 | here |")}


def api_versions(bootstrap: str):
    conn = Conn(bootstrap)
    try:
        r = conn.call((18, 4), client_software_name="parity-test", client_software_version="1")
    finally:
        conn.close()
    assert r.error_code == ErrorCode.none
    keys = {k.api_key: (k.min_version, k.max_version) for k in r.api_keys}
    finalized = {f.name: f.max_version_level for f in r.finalized_features}
    features = {f.name: ((f.min_version, f.max_version), finalized.get(f.name)) for f in r.supported_features}
    assert set(finalized) <= set(features), "a finalized feature must be supported"
    return keys, features


def test_the_table_explains_every_difference():
    apis, left_out = api_table(), left_out_table()
    assert not set(apis) & set(left_out), "a key is both served and left out"
    for key, (name, kafka, here, why) in apis.items():
        assert kafka is not None, f"{name}: the API table lists what Kafka serves; others belong in the left-out table"
        if kafka != here:
            assert why, f"{name} ({key}): Kafka serves {kafka}, here {here}, and the table does not say why"
    for key, (_kafka, why) in left_out.items():
        assert why, f"key {key} is left out without a reason"
    for name, (kafka, here, why) in feature_table().items():
        if kafka != here:
            assert why, f"feature {name}: the table does not say why it differs from Kafka"


def test_our_api_versions_are_the_documented_ones(embedded_broker):
    keys, features = api_versions(embedded_broker.bootstrap_servers)
    apis = api_table()
    problems = []
    for key, (name, kafka, here, why) in apis.items():
        got = keys.get(key)
        allowed = {here, kafka} if why.startswith(IN_PROGRESS) else {here}
        if got not in allowed:
            problems.append(f"{name} ({key}): serves {got or '—'}, docs/broker.md says {here or '—'}")
    for key in set(keys) - set(apis):
        problems.append(f"API key {key} {keys[key]} is served but missing from the table in docs/broker.md")
    for name, (kafka, here, why) in feature_table().items():
        allowed = {here, kafka} if why.startswith(IN_PROGRESS) else {here}
        if features.get(name) not in allowed:
            problems.append(f"feature {name}: {features.get(name)}, docs/broker.md says {here}")
    for name in set(features) - set(feature_table()):
        problems.append(f"feature {name} is reported but missing from the table in docs/broker.md")
    assert not problems, "\n".join(problems)


def test_kafka_api_versions_are_the_documented_ones(kafka_reference):
    if not kafka_reference:
        pytest.skip("compares with Apache Kafka: run with --kafka or KAFKA_BOOTSTRAP")
    keys, features = api_versions(kafka_reference)
    expected = {k: kafka for k, (_n, kafka, _h, _w) in api_table().items()}
    expected |= {k: kafka for k, (kafka, _w) in left_out_table().items() if kafka is not None}
    problems = [f"API key {k}: Kafka serves {keys.get(k, '—')}, docs/broker.md says {v or '—'}"
                for k, v in expected.items() if keys.get(k) != v]
    problems += [f"API key {k} {keys[k]}: Kafka serves it and docs/broker.md does not list it"
                 for k in set(keys) - set(expected)]
    for name, (kafka, _here, _why) in feature_table().items():
        if features.get(name) != kafka:
            problems.append(f"feature {name}: Kafka reports {features.get(name)}, docs/broker.md says {kafka}")
    problems += [f"feature {name} {features[name]}: Kafka reports it, docs/broker.md does not"
                 for name in set(features) - set(feature_table())]
    assert not problems, "\n".join(problems)


def test_api_versions_v3_leaves_out_features_with_minimum_0(bootstrap):
    """Clients of ApiVersions v3 expected every feature's minimum to be at least 1 (KIP-584 before KIP-778)."""
    conn = Conn(bootstrap)
    r = conn.call((18, 3), client_software_name="parity-test", client_software_version="1")
    conn.close()
    names = {f.name for f in r.supported_features}
    assert "metadata.version" in names
    assert not {"transaction.version", "group.version", "kraft.version"} & names


def test_kafka_python_takes_this_broker_for_kafka_4_1(bootstrap):
    """kafka-python infers the broker's version from ApiVersions (the newest API versions it serves); it took this
    broker for Kafka 3.8 before Produce v13, ListOffsets v10 and Fetch v17+ were served."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        assert admin._client.check_version() == (4, 1)
    finally:
        admin.close()
