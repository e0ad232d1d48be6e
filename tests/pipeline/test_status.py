"""`status` on a build that is running now, and on the same folder after the build was killed."""

import os
import signal
import subprocess
import sys
import time

from pipeline.lock import RunLock, lock_holder
from pipeline.status import format_status, run_status
from runhelpers import FAST_STAGES, ROOT, SAMPLE_CONFIG


def status(out):
    return subprocess.run([sys.executable, "-m", "pipeline", "status", "--out", out], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_lock_records_who_holds_it_and_since_when(tmp_path):
    out = str(tmp_path)
    assert lock_holder(out) is None
    before = time.time()
    with RunLock(out):
        holder = lock_holder(out)
        assert holder["pid"] == os.getpid() and before - 1 <= holder["started_unix"] <= time.time()
        assert holder["started"].startswith(time.strftime("%Y-%m-%dT"))
    assert lock_holder(out) is None


def test_status_of_a_running_then_killed_build(sample_dir, tmp_path):
    out = str(tmp_path / "run")
    with open(os.path.join(sample_dir, "manifest.csv")) as fh:
        lines = fh.readlines()
    manifest = tmp_path / "six.csv"
    manifest.write_text("".join(lines))  # header + 24 clips in 12 chunks of 2: long enough to be caught running
    cmd = [sys.executable, "-m", "pipeline", "build", "--config", SAMPLE_CONFIG, "--input", str(manifest),
           "--media-root", sample_dir, "--out", out, "--executor", "local", "--no-progress",
           "--set", f"run.stages={FAST_STAGES}", "--set", "run.chunk_size=2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        marker = os.path.join(out, "completions", "ingest", "chunk-00000.json")
        deadline = time.time() + 120
        while not os.path.exists(marker) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert os.path.exists(marker), "the build never finished its first chunk"
        report = run_status(out)  # in-process first: the build is certainly still running
        running = status(out)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert running.returncode == 0, running.stderr
    assert f"state: RUNNING (pid {proc.pid} on " in running.stdout
    assert report["running"]["pid"] == proc.pid and report["complete"] is False
    assert report["stages"]["ingest"]["done"] >= 1 and report["stages"]["ingest"]["chunks"] == 12
    assert report["stages"]["quality"] == {**report["stages"]["quality"], "done": 0, "pending": 12, "chunks": 12}
    assert "last log line: " in running.stdout and "ingest" in running.stdout.splitlines()[-1]

    killed = format_status(run_status(out))
    assert "state: incomplete, no build running" in killed and "rerun the same build command" in killed
    rows = {line.split()[0]: line.split() for line in killed.splitlines() if line.split()}
    assert rows["quality"][1:3] == ["0/12", "12"]  # nothing of quality done, all twelve chunks pending
