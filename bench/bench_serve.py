"""How much does ``python -m common serve`` answer under load, and does the server stay free?

Run: python -m bench.bench_serve [--clients 4] [--seconds 10] [--write]     (or: make bench)

Starts the real command (``python -m common serve`` on a free port of 127.0.0.1, the default
models), then for each image project keeps ``--clients`` callers posting one picture each, back
to back, for ``--seconds``: a 280x280 drawn digit (what the drawing page sends) to
``/api/mnist/predict``, the grace_hopper photo that matplotlib ships to ``/api/emojify/predict``.
Meanwhile one more caller asks ``/api/health`` every 100 ms: its latency shows whether model work
holds up the server's event loop. The clients run in this process, so they share the machine's
cores with the server, as a browser on the same machine would. Results are printed, and with
``--write`` recorded in ``bench/results/serve.md`` with the command and the machine's load.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw

from bench import RESULTS_DIR, add_write_argument, record, run
from common.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
RESULTS = RESULTS_DIR / "serve.md"
HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def drawn_digit() -> bytes:
    page = Image.new("RGB", (280, 280), "white")
    ImageDraw.Draw(page).line([(70, 60), (210, 60), (120, 230)], fill="black", width=18, joint="curve")
    buffer = io.BytesIO()
    page.save(buffer, "PNG")
    return buffer.getvalue()


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = "bench-serve-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def start_server() -> tuple[subprocess.Popen, str, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "common", "-q", "serve", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    address = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise UserError(f"python -m common serve stopped: {server.stdout.read().strip()[-500:]}")
        try:
            with urllib.request.urlopen(f"{address}/api/health", timeout=5) as response:
                health = json.load(response)
            return server, address, health
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise UserError("python -m common serve did not answer within 3 minutes")


def load(address: str, route: str, body: bytes, content_type: str, clients: int, seconds: float) -> dict:
    """``clients`` callers posting ``body`` back to back for ``seconds``; health asked meanwhile."""
    latencies: list[float] = []
    health_latencies: list[float] = []
    errors: list[str] = []
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def caller() -> None:
        while time.monotonic() < stop:
            request = urllib.request.Request(
                address + route, data=body, headers={"Content-Type": content_type}, method="POST"
            )
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    response.read()
                with lock:
                    latencies.append(time.perf_counter() - started)
            except OSError as error:
                with lock:
                    errors.append(str(error))

    def health_caller() -> None:
        while time.monotonic() < stop:
            started = time.perf_counter()
            with urllib.request.urlopen(f"{address}/api/health", timeout=60) as response:
                response.read()
            health_latencies.append(time.perf_counter() - started)
            time.sleep(0.1)

    threads = [threading.Thread(target=caller) for _ in range(clients)] + [
        threading.Thread(target=health_caller)
    ]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    milliseconds = np.array(latencies) * 1000
    health_ms = np.array(health_latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "per_second": len(latencies) / elapsed,
        "p50": float(np.percentile(milliseconds, 50)) if len(milliseconds) else float("nan"),
        "p95": float(np.percentile(milliseconds, 95)) if len(milliseconds) else float("nan"),
        "p99": float(np.percentile(milliseconds, 99)) if len(milliseconds) else float("nan"),
        "health_p50": float(np.percentile(health_ms, 50)) if len(health_ms) else float("nan"),
        "health_p95": float(np.percentile(health_ms, 95)) if len(health_ms) else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_serve", description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=4, help="concurrent callers per project (default 4)")
    parser.add_argument(
        "--projects", default="mnist,emojify", help="which routes to load, comma-separated (default both)"
    )
    parser.add_argument(
        "--seconds", type=float, default=10, help="how long each project is loaded (default 10)"
    )
    add_write_argument(parser, RESULTS)
    options = parser.parse_args(argv)
    if options.clients < 1 or options.seconds <= 0:
        raise UserError("--clients must be at least 1 and --seconds above 0")

    load_before = os.getloadavg()
    server, address, health = start_server()
    rows = []
    try:
        cases = [
            (
                "mnist",
                "/api/mnist/predict",
                "drawn digit, 280x280 PNG",
                *multipart("digit.png", drawn_digit()),
            ),
            (
                "emojify",
                "/api/emojify/predict",
                "grace_hopper.jpg, 512x600",
                *multipart("hopper.jpg", HOPPER.read_bytes()),
            ),
        ]
        for project, route, what, body, content_type in cases:
            if project not in options.projects.split(","):
                continue
            if project not in health["projects"]:
                print(f"{project}: not served ({health['unavailable'].get(project)}); skipped")
                continue
            result = load(address, route, body, content_type, options.clients, options.seconds)
            rows.append((project, route, what, result))
            print(
                f"{route}: {result['per_second']:.1f} requests/s with {options.clients} clients, "
                f"p50 {result['p50']:.0f} ms, p95 {result['p95']:.0f} ms, p99 {result['p99']:.0f} ms, "
                f"{result['errors']} errors; "
                f"/api/health meanwhile p50 {result['health_p50']:.1f} ms, p95 {result['health_p95']:.1f} ms"
            )
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    load_after = os.getloadavg()

    command = "python -m bench.bench_serve" + "".join(
        f" --{name} {value}"
        for name, value in vars(options).items()
        if name != "write" and value != parser.get_default(name)
    )
    lines = [
        "# serve: the web app under load",
        "",
        f"Command: `{command}` (from the repository root)",
        "",
        f"- Machine: {os.cpu_count()} CPU cores ({platform.machine()}); server and clients on it together",
        f"- Load average while it ran: {load_before[0]:.1f} before, {load_after[0]:.1f} after "
        "(other work on the machine slows every number below)",
        f"- {options.clients} clients per project posting back to back for {options.seconds:g} s; "
        "one more asking /api/health every 100 ms",
        "",
        "| route | upload | requests/s | p50 | p95 | p99 | errors | /api/health p50 / p95 meanwhile |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| `POST {route}` | {what} | {result['per_second']:.1f} | {result['p50']:.0f} ms | "
        f"{result['p95']:.0f} ms | {result['p99']:.0f} ms | {result['errors']} | "
        f"{result['health_p50']:.1f} / {result['health_p95']:.1f} ms |"
        for _, route, what, result in rows
    ]
    lines.append("")
    if options.write:
        record(lines, RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
