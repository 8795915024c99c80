"""How much does ``python -m common serve`` answer under load, against what its models could?

Run: python -m bench.bench_serve [--clients 1,8,50] [--seconds 10] [--json] [--write]
(or: make bench)

First the limit: each project's model alone on batches of ``--max-batch`` inputs, in inputs a
second (nothing else runs meanwhile), answered by each runtime ``serve --runtime`` offers: Keras'
``predict_on_batch`` and the model converted to ONNX, run by ONNX Runtime. Then the real command
(``python -m common serve`` on a free port of 127.0.0.1 with the default models and the same
``--max-batch``, ``--max-wait-ms`` and ``--runtime``), and for each image project and each number of clients,
that many callers posting one picture each, back to back over kept-alive connections (as a
browser does), for ``--seconds``: a 280x280 drawn digit (what the drawing page sends) to
``/api/mnist/predict``, the grace_hopper photo that matplotlib ships to ``/api/emojify/predict``.
Meanwhile one more caller asks ``/api/health`` every 100 ms: its latency shows whether model work
holds up the server's event loop. The clients run in this process, so they share the machine's
cores with the server, as a browser on the same machine would.

MNIST is held to targets, checked in the same run: at 50 clients a p99 of at most 100 ms, at least
20% of the model's own batched throughput (the faster runtime's) and no errors; at one client a
p50 of at most 15 ms.
Results are printed (``--json``: as one JSON object), and with ``--write`` recorded in
``bench/results/serve.md`` with the command and the machine's load.
"""

from __future__ import annotations

import argparse
import http.client
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
from common.core.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
RESULTS = RESULTS_DIR / "serve.md"
HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
# MNIST's targets: at the most clients, p99 and the share of the model's batched throughput; at
# one client, p50.
TARGET_P99_MS = 100.0
TARGET_SHARE = 0.2
TARGET_ALONE_P50_MS = 15.0


def drawn_digit() -> bytes:
    page = Image.new("RGB", (280, 280), "white")
    ImageDraw.Draw(page).line([(70, 60), (210, 60), (120, 230)], fill="black", width=18, joint="curve")
    buffer = io.BytesIO()
    page.save(buffer, "PNG")
    return buffer.getvalue()


CASES = {
    "mnist": ("/api/mnist/predict", "drawn digit, 280x280 PNG", "digit.png", drawn_digit),
    "emojify": ("/api/emojify/predict", "grace_hopper.jpg, 512x600", "hopper.jpg", HOPPER.read_bytes),
}


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


def model_limits(project_name: str, max_batch: int, seconds: float = 3.0) -> dict[str, float]:
    """Inputs a second the project's served model answers alone, in batches of ``max_batch``,
    by each runtime: Keras' ``predict_on_batch`` and ONNX Runtime."""
    from common.core import registry
    from common.serving import loading
    from common.serving.export import onnx_runner

    project = registry.get_project(project_name)
    model, config, _ = loading.load_saved(project, None, announce=False)
    serving = project.functions.serving_model
    model = serving(model, config) if serving is not None else model
    batch = np.zeros((max_batch, *model.input_shape[1:]), np.uint8)
    limits = {}
    for runtime, call in (("keras", model.predict_on_batch), ("onnx", onnx_runner(model))):
        call(batch)  # Traced once, outside the timing.
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            call(batch)
            calls += 1
        limits[runtime] = calls * max_batch / (time.perf_counter() - started)
    return limits


def start_server(max_batch: int, max_wait_ms: float, runtime: str) -> tuple[subprocess.Popen, int, dict]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "common", "-q", "serve", "--port", str(port)]
    command += ["--max-batch", str(max_batch), "--max-wait-ms", f"{max_wait_ms:g}", "--runtime", runtime]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise UserError(f"python -m common serve stopped: {server.stdout.read().strip()[-500:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5) as response:
                return server, port, json.load(response)
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise UserError("python -m common serve did not answer within 3 minutes")


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used so far (user and system; Linux's /proc), NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q)) if values else float("nan")


def load(
    server: subprocess.Popen,
    port: int,
    route: str,
    body: bytes,
    content_type: str,
    clients: int,
    seconds: float,
) -> dict:
    """``clients`` callers posting ``body`` back to back for ``seconds``; health asked meanwhile.
    The server's CPU time per answer says what one costs it, whatever else runs on the machine."""
    latencies: list[float] = []
    health_latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    headers = {"Content-Type": content_type}

    def caller(stop: float, record: bool) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < stop:
            started = time.perf_counter()
            try:
                connection.request("POST", route, body, headers)
                response = connection.getresponse()
                response.read()
                failed = None if response.status == 200 else f"status {response.status}"
            except (OSError, http.client.HTTPException) as error:
                failed = str(error)
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            if record:
                with lock:
                    (errors.append(failed) if failed else latencies.append(time.perf_counter() - started))
        connection.close()

    def health_caller(stop: float) -> None:
        while time.monotonic() < stop:
            started = time.perf_counter()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=60) as response:
                response.read()
            health_latencies.append(time.perf_counter() - started)
            time.sleep(0.1)

    def run_callers(seconds: float, record: bool) -> float:
        stop = time.monotonic() + seconds
        threads = [threading.Thread(target=caller, args=(stop, record)) for _ in range(clients)]
        if record:
            threads.append(threading.Thread(target=health_caller, args=(stop,)))
        began = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.monotonic() - began

    run_callers(min(2.0, seconds), record=False)  # Connections opened, every code path warm.
    cpu_before = cpu_seconds(server.pid)
    elapsed = run_callers(seconds, record=True)
    server_cpu = cpu_seconds(server.pid) - cpu_before
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "per_second": len(latencies) / elapsed,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "p99": percentile(latencies, 99),
        "health_p50": percentile(health_latencies, 50),
        "health_p95": percentile(health_latencies, 95),
        "server_cpu_ms": 1000 * server_cpu / max(1, len(latencies) + len(errors)),
    }


def check_targets(limit: float, results: list[dict]) -> list[str]:
    """MNIST's targets, each as one line saying whether it was met."""
    most = max(results, key=lambda result: result["clients"])
    alone = min(results, key=lambda result: result["clients"])
    share = most["per_second"] / limit
    checks = [
        (
            most["p99"] <= TARGET_P99_MS,
            f"p99 at {most['clients']} clients {most['p99']:.0f} ms (target ≤ 100)",
        ),
        (
            share >= TARGET_SHARE,
            f"{most['per_second']:.0f} requests/s at {most['clients']} clients = {share:.0%} of the "
            f"model's batched {limit:.0f} inputs/s (target ≥ 20%)",
        ),
        (most["errors"] == 0, f"{most['errors']} errors at {most['clients']} clients (target 0)"),
        (
            alone["p50"] <= TARGET_ALONE_P50_MS,
            f"p50 at {alone['clients']} client{'s' if alone['clients'] > 1 else ''} {alone['p50']:.1f} ms "
            "(target ≤ 15)",
        ),
    ]
    return [f"{'met' if met else 'MISSED'}: {text}" for met, text in checks]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_serve", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--clients", default="1,8,50", help="numbers of concurrent callers, comma-separated (default 1,8,50)"
    )
    parser.add_argument(
        "--projects", default="mnist,emojify", help="which routes to load, comma-separated (default both)"
    )
    parser.add_argument(
        "--seconds", type=float, default=10, help="how long each load is kept up (default 10)"
    )
    parser.add_argument("--max-batch", type=int, default=64, help="serve --max-batch (default 64)")
    parser.add_argument("--max-wait-ms", type=float, default=5, help="serve --max-wait-ms (default 5)")
    parser.add_argument(
        "--runtime", choices=("keras", "onnx"), default="keras", help="serve --runtime (default keras)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    add_write_argument(parser, RESULTS)
    options = parser.parse_args(argv)
    try:
        client_counts = [int(count) for count in options.clients.split(",")]
    except ValueError:
        raise UserError(f"--clients takes numbers separated by commas; received: {options.clients}") from None
    projects = [name for name in options.projects.split(",") if name]
    unknown = sorted(set(projects) - set(CASES))
    if unknown:
        raise UserError(
            f"--projects: {', '.join(unknown)} not benchmarked here; choose from {', '.join(CASES)}"
        )
    if min(client_counts) < 1 or options.seconds <= 0 or options.max_batch < 1:
        raise UserError("--clients and --max-batch must be at least 1 and --seconds above 0")

    load_before = os.getloadavg()
    limits = {name: model_limits(name, options.max_batch) for name in projects}
    server, port, health = start_server(options.max_batch, options.max_wait_ms, options.runtime)
    results: dict[str, list[dict]] = {}
    try:
        for name in projects:
            route, _, file_name, read = CASES[name]
            if name not in health["projects"]:
                print(f"{name}: not served ({health['unavailable'].get(name)}); skipped", file=sys.stderr)
                continue
            body, content_type = multipart(file_name, read())
            results[name] = [
                load(server, port, route, body, content_type, clients, options.seconds)
                for clients in client_counts
            ]
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    load_after = os.getloadavg()

    command = "python -m bench.bench_serve" + "".join(
        f" --{name.replace('_', '-')} {value}"
        for name, value in vars(options).items()
        if name not in ("write", "json") and value != parser.get_default(name)
    )
    targets = check_targets(max(limits["mnist"].values()), results["mnist"]) if "mnist" in results else []
    if options.json:
        print(
            json.dumps({"command": command, "model_limits": limits, "results": results, "targets": targets})
        )
    lines = [
        "# serve: the web app under load",
        "",
        f"Command: `{command}` (from the repository root)",
        "",
        f"- Machine: {os.cpu_count()} CPU cores ({platform.machine()}); server and clients on it together",
        f"- Load average while it ran: {load_before[0]:.1f} before, {load_after[0]:.1f} after "
        "(other work on the machine slows every number below)",
        f"- Server: `serve --max-batch {options.max_batch} --max-wait-ms {options.max_wait_ms:g} "
        f"--runtime {options.runtime}`; each load "
        f"kept up for {options.seconds:g} s over kept-alive connections, one more caller asking "
        "/api/health every 100 ms",
        "",
        f"The limit: each model alone on batches of {options.max_batch} inputs (what one batched call "
        "of the server can do at most), by Keras' `predict_on_batch` and by ONNX Runtime:",
        "",
        *(
            f"- {name}: Keras {limit['keras']:,.0f} inputs/s, ONNX Runtime {limit['onnx']:,.0f} inputs/s"
            for name, limit in limits.items()
        ),
        "",
        "| route | upload | clients | requests/s | p50 | p95 | p99 | errors | server CPU per request "
        "| /api/health p50 / p95 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| `POST {CASES[name][0]}` | {CASES[name][1]} | {result['clients']} | {result['per_second']:.1f} | "
        f"{result['p50']:.1f} ms | {result['p95']:.1f} ms | {result['p99']:.1f} ms | {result['errors']} | "
        f"{result['server_cpu_ms']:.1f} ms | {result['health_p50']:.1f} / {result['health_p95']:.1f} ms |"
        for name, rows in results.items()
        for result in rows
    ]
    if targets:
        lines += ["", "MNIST's targets:", "", *(f"- {line}" for line in targets)]
    lines.append("")
    if not options.json:
        print("\n".join(lines))
    if options.write:
        record(lines, RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
