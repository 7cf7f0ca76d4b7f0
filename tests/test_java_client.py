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
