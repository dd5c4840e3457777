"""examples/run-against-moto.sh, the README's local-run recipe, run as a newcomer would: real processes
(bash, moto in server mode, kvs-sentinel run), bounded in time, so the recipe cannot rot."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent.parent / "examples" / "run-against-moto.sh"


def test_run_against_moto_script_shows_every_alert_and_leaves_nothing_running(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "TIMEOUT": "60", "TMPDIR": str(tmp_path)}
    process = subprocess.Popen(
        ["bash", str(SCRIPT)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: whatever it started is found below
    )
    try:
        out, err = process.communicate(timeout=150)
        assert process.returncode == 0, out + err
        alerts = [line for line in out.splitlines() if re.match(r"  (info|low|medium|high|critical) ", line)]
        done = re.search(r"==> done: (\d+) alerts, moto stopped", out)
        assert done, out
        assert len(alerts) == int(done.group(1)) > 0
        assert any("kvs-producer-control-plane-write" in line for line in alerts)
        assert "==> kvs-sentinel stopped cleanly: 14 done, 0 failed" in out
        survivors = True
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            survivors = False
        assert not survivors, "moto or kvs-sentinel still running after the script ended"
        assert list(tmp_path.iterdir()) == []  # its working folder is removed
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
