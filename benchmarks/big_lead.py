"""Peak memory of the tap on one lead with a very long call history (issue 12: bounded by pages).

Usage::

    .venv/bin/python benchmarks/big_lead.py [calls ...]   # default: 20000 200000

A small canned server (standard library) serves one lead and its calls in pages of 1,000
(cursor mode, generated on the fly, so the server holds none of them); the tap runs as
a child process with stdout to /dev/null, only calls selected. Prints the tap's peak RSS
per history length: with pages streamed rather than a lead's whole history held, it
stays flat as the history grows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

ROOT = Path(__file__).resolve().parent.parent
LEAD_ID = 1_364_567_890_123_456_789
FIRST_CALL = 1_565_000_000_000_000_000


def handler_for(calls: int) -> type[BaseHTTPRequestHandler]:
    class Canned(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/v1.0/leads":
                body: dict[str, object] = {"_metadata": {"total": 1}, "leads": []}
                if "scrollId" not in query:
                    lead = {"leadId": LEAD_ID, "createTime": "2026-01-01T00:00:00GMT"}
                    body = {"_metadata": {"total": 1, "scrollId": "s1"}, "leads": [lead]}
            elif url.path == "/v1.0/communication/call":
                after = int(query.get("currentId", "0")) - FIRST_CALL
                start = max(after + 1, 0)
                stop = min(start + int(query.get("limit", "10")), calls)
                body = {"calls": [call(i) for i in range(start, stop)]}
            else:
                body = {"texts": [], "emails": []}
            raw = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    return Canned


def call(i: int) -> dict[str, object]:
    return {
        "id": FIRST_CALL + i,
        "leadId": LEAD_ID,
        "userId": 1_300_000_000_000_000_001,
        "direction": "Outbound",
        "status": "Completed",
        "startTime": "2026-02-01 10:00:00",
        "endTime": "2026-02-01 10:05:00",
        "createTime": "2026-02-01 10:05:00",
        "duration": 300,
        "callingOutcome": "Talked",
        "note": "Asked about the three-bedroom listing; call back next week.",
    }


def measure(calls: int) -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(calls))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as work:
        config = {
            "api_url": f"http://127.0.0.1:{server.server_address[1]}",
            "api_key": "k",
            "requests_per_minute": 1_000_000,
        }
        config_path = Path(work, "config.json")
        config_path.write_text(json.dumps(config))
        tap = Path(sys.executable).parent / "tap-lofty"
        with open(os.devnull, "wb") as sink:
            child = subprocess.Popen(
                [str(tap), "--config", str(config_path)], stdout=sink, stderr=subprocess.DEVNULL
            )
            _, status, usage = os.wait4(child.pid, 0)  # this child's own peak RSS
            child.returncode = os.waitstatus_to_exitcode(status)
    server.shutdown()
    if child.returncode != 0:
        raise SystemExit(f"the tap failed with exit code {child.returncode}")
    return usage.ru_maxrss


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [20_000, 200_000]
    print("| calls on one lead | tap peak RSS |")
    print("|---:|---:|")
    for calls in sizes:
        print(f"| {calls:,} | {measure(calls) / 1024:.0f} MiB |", flush=True)


if __name__ == "__main__":
    main()
