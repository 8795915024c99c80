"""How much memory does ``python -m common serve`` take when large pictures arrive at once?

Run: python -m bench.serve_memory [--route mnist] [--side 7999] [--uploads 4] [--write]

Starts the real command (``python -m common -q serve`` on a free port of 127.0.0.1), answers one
small picture on the route first (so the model's first call is not counted), then posts
``--uploads`` copies of one ``--side`` x ``--side`` RGBA PNG at once: transparent, with a bar of
black ink across its middle, a few hundred kilobytes however many pixels it has. The server's
peak resident memory (``VmHWM`` of ``/proc/PID/status``, Linux) is read before and after; the
difference is what the uploads cost it at most. Each run starts its own server, as the peak only
ever grows.
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from bench import RESULTS_DIR, add_write_argument, report, run
from bench.bench_serve import multipart, start_server
from common.core.errors import UserError

RESULTS = RESULTS_DIR / "serve-memory.md"
ROUTES = {"mnist": "/api/mnist/predict", "emojify": "/api/emojify/predict"}


def inked_png(side: int) -> bytes:
    """A ``side`` x ``side`` transparent RGBA PNG with a black bar across its middle third,
    written row by row: it is never held decoded here."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    third = side // 3
    clear = b"\0" + bytes(4 * side)
    inked = b"\0" + bytes(4 * third) + b"\0\0\0\xff" * (side - 2 * third) + bytes(4 * third)
    packer = zlib.compressobj(6)
    data = b"".join(packer.compress(inked if third <= row < 2 * third else clear) for row in range(side))
    header = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", data + packer.flush())
        + chunk(b"IEND", b"")
    )


def memory_mb(pid: int, field: str) -> float:
    """``VmHWM`` (peak) or ``VmRSS`` (now) of a process, in MB (Linux's /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise UserError(f"/proc/{pid}/status has no {field}: this benchmark needs Linux")


def post(port: int, route: str, name: str, data: bytes) -> tuple[int, float]:
    """Posts one picture; returns the status and the seconds the answer took."""
    body, content_type = multipart(name, data)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{route}", data=body, headers={"Content-Type": content_type}, method="POST"
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    return status, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_memory", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--route", choices=sorted(ROUTES), default="mnist", help="which route (default mnist)"
    )
    parser.add_argument("--side", type=int, default=7999, help="the PNG's width and height (default 7999)")
    parser.add_argument("--uploads", type=int, default=4, help="uploads posted at once (default 4)")
    add_write_argument(parser, RESULTS)
    options = parser.parse_args(argv)
    if options.side < 3 or options.uploads < 1:
        raise UserError("--side must be at least 3 and --uploads at least 1")
    route = ROUTES[options.route]
    picture = inked_png(options.side)
    server, port, _ = start_server(max_batch=64, max_wait_ms=5, runtime="keras")
    try:
        post(port, route, "warm-up.png", inked_png(280))
        idle, before = memory_mb(server.pid, "VmRSS"), memory_mb(server.pid, "VmHWM")
        answers: list[tuple[int, float]] = []
        callers = [
            threading.Thread(target=lambda: answers.append(post(port, route, "large.png", picture)))
            for _ in range(options.uploads)
        ]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
        after = memory_mb(server.pid, "VmHWM")
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    command = "python -m bench.serve_memory" + "".join(
        f" --{name} {value}"
        for name, value in vars(options).items()
        if name != "write" and value != parser.get_default(name)
    )
    statuses = ", ".join(str(status) for status, _ in sorted(answers))
    report(
        [
            "# serve: memory when large pictures arrive at once",
            "",
            f"Command: `{command}` (from the repository root)",
            "",
            f"- Machine: {os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.1f} after the run",
            f"- {options.uploads} uploads at once of a {options.side}x{options.side} RGBA PNG "
            f"({len(picture) / 1024:,.0f} KB) to `POST {route}`: statuses {statuses}; "
            f"answered in {min(seconds for _, seconds in answers):.1f} to "
            f"{max(seconds for _, seconds in answers):.1f} s",
            f"- Server resident memory: {idle:,.0f} MB idle after one small picture (peak so far "
            f"{before:,.0f} MB); peak {after:,.0f} MB with the uploads: **{after - before:+,.0f} MB**",
        ],
        RESULTS,
        options.write,
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
