"""Nothing downloads at run time unless `stages.quality.allow_download` says so.

A real Hugging Face hub protocol server on loopback (HEAD + GET of resolve/main/checkpoint.pt, the
headers huggingface_hub checks) stands in for the internet: it records every request it gets.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading

import pytest

from runhelpers import ROOT

# One interpreter (torch imports once) resolves the quality backend with downloads off, then on.
PREFLIGHT = """
import json, os, sys
from stages.quality import QualityParams, QualityStage
for allow, cache in (("off", sys.argv[1]), ("on", sys.argv[2])):
    os.environ["HF_HUB_CACHE"] = cache
    print(allow, json.dumps(QualityStage.preflight(QualityParams(allow_download=allow == "on"))), flush=True)
    if allow == "off":
        print("requests after off", sys.stdin.readline().strip(), flush=True)
"""


def _small_checkpoint() -> bytes:
    """checkpoint.pt's format (what the preflight inspects), without the 94 M weights: fast to serve."""
    import io

    import torch

    from audioquality.audiobox import RANDOM_MODEL_CFG, RANDOM_TARGET_TRANSFORM

    buffer = io.BytesIO()
    torch.save({"state_dict": {}, "model_cfg": dict(RANDOM_MODEL_CFG),
                "target_transform": {a: dict(v) for a, v in RANDOM_TARGET_TRANSFORM.items()}}, buffer)
    return buffer.getvalue()


@pytest.fixture
def local_hub():
    data = _small_checkpoint()
    requests: list[tuple[str, str]] = []

    class Hub(http.server.BaseHTTPRequestHandler):
        def _headers(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("X-Repo-Commit", "0" * 40)
            self.end_headers()

        def do_HEAD(self):
            requests.append(("HEAD", self.path))
            self._headers()

        def do_GET(self):
            requests.append(("GET", self.path))
            self._headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", requests
    server.shutdown()


def test_download_only_when_opted_in(local_hub, tmp_path):
    endpoint, requests = local_hub
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=endpoint, PYTHONPATH=ROOT)
    caches = [str(tmp_path / "cache-off"), str(tmp_path / "cache-on")]
    proc = subprocess.Popen([sys.executable, "-c", PREFLIGHT, *caches], env=env, cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        allow, off = proc.stdout.readline().split(" ", 1)
        requests_after_off = list(requests)  # read before the opt-in call runs
        proc.stdin.write("go\n")
        proc.stdin.flush()
        proc.stdout.readline()
        allow, on = proc.stdout.readline().split(" ", 1)
        assert proc.wait(timeout=120) == 0
    finally:
        proc.kill()
    off, on = json.loads(off), json.loads(on)
    assert off["backend"] == "dsp"
    assert "download: not allowed (set stages.quality.allow_download: true" in off["why"]
    assert requests_after_off == []  # the hub was reachable and was never asked
    assert not os.path.exists(tmp_path / "cache-off" / "models--facebook--audiobox-aesthetics")

    assert on["backend"] == "audiobox" and on["checkpoint_origin"] == "download"
    assert ("GET", "/facebook/audiobox-aesthetics/resolve/main/checkpoint.pt") in requests
    assert on["checkpoint"].startswith(str(tmp_path / "cache-on" / "models--facebook--audiobox-aesthetics"))
