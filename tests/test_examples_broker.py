"""The broker quick-start example runs and prints what it produced."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_broker_quickstart_example(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "examples" / "broker_quickstart.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[1:] == ["oslo: -3", "lima: 19", "oslo: -5"]
