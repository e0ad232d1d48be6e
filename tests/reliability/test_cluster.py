"""A two-node Ray cluster on one machine (`ray start --head`, then a second `ray start --address`), each
node with its own temp dir, CPU and resources: a build through RAY_ADDRESS uses both nodes and writes the
same shards as a local run. The test stops both nodes whatever happens (by the pids of the processes
that belong to its own temp dirs: never `ray stop`, which would stop other people's Ray too)."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from procs import cmdline
from runhelpers import ROOT
from test_faults import build_cmd, reference_run, shard_bytes  # noqa: F401 (a fixture)

RAY = os.path.join(os.path.dirname(sys.executable), "ray")


def free_ports(n: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def node_pids(temp_dir: str) -> list[int]:
    """Processes of a node: every process whose command line names the node's own temp dir."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and temp_dir in cmdline(int(p))]


def stop_nodes(temp_dirs: list[str]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [p for d in temp_dirs for p in node_pids(d)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.time() + 15
        while any(node_pids(d) for d in temp_dirs) and time.time() < deadline:
            time.sleep(0.2)


def start_node(temp_dir: str, *args: str) -> None:
    ports = free_ports(6)
    cmd = [RAY, "start", "--temp-dir", temp_dir, "--num-cpus", "1", "--disable-usage-stats", "--node-manager-port", str(ports[0]), "--object-manager-port", str(ports[1]),
           "--dashboard-agent-listen-port", str(ports[2]), "--dashboard-agent-grpc-port", str(ports[3]),
           "--runtime-env-agent-port", str(ports[4]), "--metrics-export-port", str(ports[5]), "--object-store-memory", str(200 << 20), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def worker_pids(temp_dir: str) -> set[int]:
    """The pids of the worker processes a node ran (its worker log files are named after them)."""
    names = glob.glob(os.path.join(temp_dir, "session_*", "logs", "worker-*.out"))
    return {int(re.search(r"-(\d+)\.out$", n).group(1)) for n in names}


@pytest.mark.slow
def test_two_node_cluster_gives_the_local_shards(tmp_path, reference_run):
    media, manifest, expected = reference_run
    head_dir = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    node_dir = tempfile.mkdtemp(prefix="rn", dir="/tmp")
    try:
        port = free_ports(1)[0]
        start_node(head_dir, "--head", "--include-dashboard", "false", "--port", str(port), "--node-ip-address", "127.0.0.1",
                   "--resources", json.dumps({"head_node": 1}))
        address = f"127.0.0.1:{port}"
        start_node(node_dir, "--address", address, "--node-ip-address", "127.0.0.1",
                   "--resources", json.dumps({"second_node": 1}))
        out = str(tmp_path / "run")
        env = {**os.environ, "RAY_ADDRESS": address, "PYTHONPATH": ROOT}
        done = subprocess.run(build_cmd(manifest, media, out), cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert shard_bytes(out) == expected

        # both nodes measured clips: the markers name the worker pids, each node logged its own workers
        used = set()
        for path in glob.glob(os.path.join(out, "completions", "*", "*.json")):
            used |= {int(w.rsplit(":", 1)[1]) for w in json.load(open(path)).get("workers", [])}
        on_head, on_node = used & worker_pids(head_dir), used & worker_pids(node_dir)
        assert on_head and on_node, (sorted(used), sorted(worker_pids(head_dir)), sorted(worker_pids(node_dir)))
        assert used == on_head | on_node
    finally:
        stop_nodes([head_dir, node_dir])
        leftover = [p for d in (head_dir, node_dir) for p in node_pids(d)]
        shutil.rmtree(head_dir, ignore_errors=True)
        shutil.rmtree(node_dir, ignore_errors=True)
    assert not leftover, leftover
