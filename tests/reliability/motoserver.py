"""A local S3 endpoint for tests: moto's server on loopback, in its own process (off the build's GIL).

    python motoserver.py      # prints the endpoint URL on its first line, serves until stdin closes
"""

from __future__ import annotations

import logging
import sys

if __name__ == "__main__":
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(f"http://{host}:{port}", flush=True)
    sys.stdin.read()  # the test closes our stdin (or dies): then stop
    server.stop()
