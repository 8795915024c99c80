"""The web app of ``python -m common serve``: the same answers as ``predict``, JSON errors, local pages."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated

import matplotlib
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from common.core.project import Headline, Option
from tests.conftest import ROOT

pytest.importorskip("fastapi")
pytest.importorskip("httpx2")  # FastAPI's TestClient.

from fastapi.testclient import TestClient  # noqa: E402

HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
PAGES = ("/", "/mnist", "/emojify", "/stock")


@pytest.fixture(scope="module")
def shipped_app():
    """The app serving the shipped mnist and emojify models (as `serve` loads them)."""
    from common.serving import app as web_app

    served, unavailable = web_app.load_projects(["mnist", "emojify"])
    return web_app.create_app(served, unavailable, max_upload_bytes=2 * 2**20)


@pytest.fixture(scope="module")
def client(shipped_app):
    # raise_server_exceptions=False: an unexpected error must reach the client as JSON too.
    with TestClient(shipped_app, raise_server_exceptions=False) as test_client:
        yield test_client


def drawn_digit(path: Path) -> Path:
    """A dark "7" stroked on white paper, as the drawing page sends it."""
    page = Image.new("RGB", (280, 280), "white")
    draw = ImageDraw.Draw(page)
    draw.line([(70, 60), (210, 60), (120, 230)], fill="black", width=18, joint="curve")
    page.save(path)
    return path


def upload(client, route: str, path: Path, name: str | None = None, **params):
    with path.open("rb") as stream:
        return client.post(route, params=params, files={"file": (name or path.name, stream, "image/png")})


def test_mnist_api_answers_as_predict_does(client, cli, tmp_path):
    digit = drawn_digit(tmp_path / "seven.png")
    response = upload(client, "/api/mnist/predict", digit)
    assert response.status_code == 200, response.text
    answer = response.json()
    predicted = cli("predict", "mnist", digit, "--json")
    assert predicted.code == 0, predicted.stderr
    expected = json.loads(predicted.stdout)
    assert answer["label"] == expected["label"] == 7
    assert answer["top3"] == expected["top3"]
    # The client's file name is shown back; the server's temporary path never is.
    assert answer["input"] == "seven.png"


def test_emojify_api_finds_the_faces_predict_finds(client, cli, tmp_path):
    mirrored = tmp_path / "hopper-mirrored.png"
    ImageOps.mirror(Image.open(HOPPER).convert("RGB")).save(mirrored)
    response = upload(client, "/api/emojify/predict", mirrored, annotated="true")
    assert response.status_code == 200, response.text
    answer = response.json()
    predicted = cli("predict", "emojify", mirrored, "--json")
    expected = json.loads(predicted.stdout)
    assert answer["faces"] == expected["faces"] and len(answer["faces"]) >= 1
    assert answer["whole_image"] == expected["whole_image"]
    assert answer["annotated"].startswith("data:image/png;base64,")
    plain = upload(client, "/api/emojify/predict", mirrored).json()
    assert "annotated" not in plain and plain["faces"] == expected["faces"]


def test_the_annotated_picture_of_a_large_photo_comes_back_at_display_size(client, tmp_path):
    """A photo of several megapixels: the drawn picture is scaled down to the page's size, so the
    reply stays far smaller than the photo's pixels would make it."""
    import base64
    import io

    photo = tmp_path / "large.jpg"
    Image.open(HOPPER).convert("RGB").resize((2048, 2400)).save(photo, quality=90)
    assert photo.stat().st_size < 2 * 2**20  # Under the fixture's upload limit.
    response = upload(client, "/api/emojify/predict", photo, annotated="true")
    assert response.status_code == 200, response.text
    assert len(response.json()["faces"]) >= 1
    data = response.json()["annotated"].removeprefix("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(data))) as picture:
        assert max(picture.size) == 800
        assert picture.size[0] / picture.size[1] == pytest.approx(2048 / 2400, abs=0.01)
    assert len(response.content) < 1.5 * 2**20, len(response.content)


def test_a_text_file_is_a_json_error_naming_the_upload(client, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not a picture at all\n" * 20)
    for route in ("/api/mnist/predict", "/api/emojify/predict"):
        response = upload(client, route, text, name="../../etc/notes.png")
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert "not an image" in error and "notes.png" in error
        assert "serve-" not in error and str(tmp_path) not in error  # No server path leaks.


def test_a_decompression_bomb_is_refused_before_it_is_decoded(client, tmp_path):
    import struct
    import zlib

    # A small PNG whose header claims 20,000 x 20,000 pixels (400 megapixels).
    header = struct.pack(">IIBBBBB", 20_000, 20_000, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + header
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    png += struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    for route in ("/api/mnist/predict", "/api/emojify/predict"):
        response = client.post(route, files={"file": ("bomb.png", png, "image/png")})
        assert response.status_code == 400, response.text
        assert "too large to read safely" in response.json()["error"]


def blank_png(width: int, height: int, ink: tuple[int, int, int, int] | None = None) -> bytes:
    """A transparent RGBA PNG of any size, a few hundred kilobytes however many pixels it has,
    written without ever holding its pixels; with ``ink``, a bar of it across the middle third."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    clear = b"\0" + bytes(4 * width)
    inked = b"\0" + bytes(4 * (width // 3)) + bytes(ink or (0, 0, 0, 0)) * (width - 2 * (width // 3))
    inked += bytes(4 * (width // 3))
    packer = zlib.compressobj(6)
    data = b"".join(
        packer.compress(inked if ink and height // 3 <= row < 2 * height // 3 else clear)
        for row in range(height)
    )
    data += packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def test_mnist_refuses_a_picture_far_larger_than_a_digit_needs_before_decoding_it(client):
    """A 7999x7999 PNG is 265 KB but 256 MB decoded: MNIST, which needs 28x28, refuses it unread."""
    png = blank_png(7999, 7999)
    assert len(png) < 2**20
    started = time.monotonic()
    response = client.post("/api/mnist/predict", files={"file": ("huge.png", png, "image/png")})
    assert response.status_code == 400, response.text
    assert (
        "huge.png: 7999x7999 pixels is too large to read safely (limit 16 megapixels)"
        in response.json()["error"]
    )
    assert time.monotonic() - started < 2  # Refused from its header, not decoded.


def test_pictures_read_at_once_wait_for_memory_and_are_read_scaled_down(monkeypatch, tmp_path):
    """Four large PNGs read by four threads at once: the bytes they take together never go over
    the budget (some wait for others), and each comes back scaled down, not converted at full size."""
    from common.kit import images

    picture = tmp_path / "large.png"
    picture.write_bytes(blank_png(3000, 3000, ink=(0, 0, 0, 255)))
    budget = images.PictureMemory(100 * 2**20)  # More than one of these reads, less than two.
    monkeypatch.setattr(images, "picture_memory", budget)
    arrays: list[np.ndarray] = []
    start = threading.Barrier(4)

    def read() -> None:
        start.wait(timeout=30)
        with budget.request():
            arrays.append(images.read_image(picture, "L", max_side=1000))

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(arrays) == 4 and budget.used == 0
    assert 36 * 2**20 < budget.most <= budget.total  # One read's share at least; never over.
    for array in arrays:
        assert array.shape == (1000, 1000)
        assert array[500, 500] == 0 and array[100, 500] == 255  # Ink on white paper.


def test_a_large_photos_faces_are_found_and_boxed_in_its_own_pixels(client, tmp_path):
    """A photo larger than emojify reads it is scaled down for the search; its boxes are the
    photo's own, the boxes of the same photo at a fifth of the size times five."""
    small, large = tmp_path / "small.png", tmp_path / "large.jpg"
    hopper = Image.open(HOPPER).convert("RGB")
    hopper.save(small)
    hopper.resize((hopper.width * 5, hopper.height * 5), Image.Resampling.BICUBIC).save(
        large, compress_level=1
    )
    [face] = upload(client, "/api/emojify/predict", small).json()["faces"]
    response = upload(client, "/api/emojify/predict", large)
    assert response.status_code == 200, response.text
    [big_face] = response.json()["faces"]
    for ours, theirs in zip(big_face["box"], face["box"]):
        assert ours == pytest.approx(5 * theirs, abs=60)  # Found at another scale: a few pixels apart.


def test_an_upload_over_the_limit_is_refused_with_413(client):
    big = b"\x89PNG" + bytes(3 * 2**20)
    response = client.post("/api/mnist/predict", files={"file": ("big.png", big, "image/png")})
    assert response.status_code == 413
    assert "larger than 2 MB" in response.json()["error"]

    # Sent in chunks without a Content-Length, it is cut off as soon as the limit is passed.
    boundary = "limit-test"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    def chunks():
        yield head
        for _ in range(3):
            yield bytes(2**20)
        yield f"\r\n--{boundary}--\r\n".encode()

    streamed = client.post(
        "/api/mnist/predict",
        content=chunks(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert streamed.status_code == 413 and "larger than 2 MB" in streamed.json()["error"]


def test_errors_are_json_never_pages(client):
    assert client.get("/no/such/page").json() == {"error": "no such page or API route: /no/such/page"}
    missing = client.post("/api/mnist/predict")
    assert missing.status_code == 422 and "file" in missing.json()["error"]
    assert client.get("/api/mnist/predict").status_code == 405
    assert "error" in client.get("/api/mnist/predict").json()
    empty = client.post("/api/mnist/predict", files={"file": ("empty.png", b"", "image/png")})
    assert empty.status_code == 400 and "empty" in empty.json()["error"]


def test_health_lists_each_model_and_its_recorded_score(client):
    health = client.get("/api/health").json()
    mnist = health["projects"]["mnist"]
    assert mnist["model"] == "models/pretrained/mnist/model.keras"
    assert mnist["score"] == {"metric": "test_accuracy", "value": 0.995}
    assert mnist["api"] == "/api/mnist/predict" and mnist["page"] == "/mnist"
    assert health["projects"]["emojify"]["api"] == "/api/emojify/predict"


def test_pages_and_docs_use_only_local_assets(client):
    for page in (*PAGES, "/docs"):
        response = client.get(page)
        assert response.status_code == 200, page
        assert response.headers["content-type"].startswith("text/html")
        html = response.text
        assert not re.search(r"https?://", html), f"{page} names another host"
        for asset in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert asset.startswith("/"), (page, asset)
            if asset.startswith(("/static/", "/swagger-ui/")):
                fetched = client.get(asset)
                assert fetched.status_code == 200, asset
                if asset.endswith((".js", ".css")) and not asset.startswith("/swagger-ui/"):
                    assert not re.search(r"https?://", fetched.text), asset
    assert client.get("/openapi.json").json()["paths"]["/api/mnist/predict"]["post"]


def test_a_project_without_a_page_gets_the_plain_upload_page(shipped_app, monkeypatch, tmp_path):
    from common.serving import app as web_app

    monkeypatch.setattr(web_app, "PAGE_FILE", "no-page-here.html")
    served, unavailable = web_app.load_projects(["mnist"])
    with TestClient(web_app.create_app(served, unavailable)) as client:
        page = client.get("/mnist")
        assert page.status_code == 200 and "has no page of its own" in page.text
        assert not re.search(r"https?://", page.text)
        assert client.get("/api/health").json()["projects"]["mnist"]["page"] == "/mnist"
        assert client.get("/emojify").status_code == 404  # Not served here, and no page of its own.


def test_stock_forecast_answers_as_predict_does(models_dir, cli, tmp_path):
    from common.core import runs
    from common.serving import app as web_app

    trained = cli("train", "stock", "--set", "train.epochs=1", "--promote")
    assert trained.code == 0, trained.stderr
    # A later run, not promoted, does not take its place.
    assert cli("train", "stock", "--set", "train.epochs=1", "--set", "model.units=[16]").code == 0
    promoted = models_dir / "stock" / runs.promoted_name("stock")
    assert runs.latest_run("stock") != promoted.resolve()
    served, unavailable = web_app.load_projects(["stock"])
    assert served["stock"].model_file.resolve() == (promoted / "model.keras").resolve()
    with TestClient(web_app.create_app(served, unavailable), raise_server_exceptions=False) as client:
        response = client.post("/api/stock/forecast", params={"days": 3, "history": 10})
        assert response.status_code == 200, response.text
        answer = response.json()
        expected = json.loads(cli("predict", "stock", "--days", "3", "--json").stdout)
        assert answer["dates"] == expected["dates"] and answer["forecast"] == expected["forecast"]
        assert len(answer["history"]) == 10 and answer["history"][-1] == expected["last_price"]

        csv = tmp_path / "prices.csv"
        days = np.arange(60)
        csv.write_text(
            "Date,Close\n"
            + "".join(f"2020-{1 + day // 28:02d}-{1 + day % 28:02d},{100 + day}\n" for day in days)
        )
        with csv.open("rb") as stream:
            uploaded = client.post(
                "/api/stock/forecast", params={"days": 2}, files={"file": ("prices.csv", stream, "text/csv")}
            )
        assert uploaded.status_code == 200, uploaded.text
        assert uploaded.json()["input"] == "prices.csv" and len(uploaded.json()["forecast"]) == 2
        # What the page sends without a CSV: a form with no file in it.
        formless = client.post(
            "/api/stock/forecast",
            params={"days": 3},
            content=b"--x--\r\n",
            headers={"Content-Type": "multipart/form-data; boundary=x"},
        )
        assert formless.status_code == 200 and formless.json()["forecast"] == expected["forecast"]
        bad = tmp_path / "bad.csv"
        bad.write_text("When,Close\nyesterday,1\n")
        with bad.open("rb") as stream:
            refused = client.post("/api/stock/forecast", files={"file": ("bad.csv", stream, "text/csv")})
        assert refused.status_code == 400 and "bad.csv" in refused.json()["error"], refused.text
        assert "serve-" not in refused.json()["error"]
        too_far = client.post("/api/stock/forecast", params={"days": 10_000})
        assert too_far.status_code == 400 and "--days" in too_far.json()["error"]


@contextlib.contextmanager
def running(app, seconds_to_send: float = 10.0):
    """The app on a free port of 127.0.0.1, in a thread, as `serve` runs it; yields its address."""
    import uvicorn

    from common.serving import app as web_app

    sock = web_app.listening_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(web_app.server_config(app, seconds_to_send=seconds_to_send, quiet=True))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_model_calls_leave_the_server_free_and_take_turns(tmp_path):
    """A slow model call runs in the thread pool (health answers while it runs), and two calls
    to a project that is not batched (here: its model has no predict_on_batch) never run at the
    same time. No clock: the model call holds until the test releases it."""
    from common.serving import app as web_app

    busy = {"now": 0, "most": 0}
    guard = threading.Lock()
    entered, release = threading.Event(), threading.Event()

    def slow_predict(model, inputs, config):
        with guard:
            busy["now"] += 1
            busy["most"] = max(busy["most"], busy["now"])
        entered.set()
        release.wait(timeout=60)
        with guard:
            busy["now"] -= 1
        return [{"input": inputs[0], "answer": 42}]

    project = SimpleNamespace(
        name="slow",
        folder=tmp_path,
        summary=lambda: "a slow model",
        functions=SimpleNamespace(predict=slow_predict),
        headline=Headline("test_accuracy"),
    )
    item = web_app.ServedProject(project, None, None, tmp_path / "model.keras", dict(web_app.DEFAULT_WEB_API))
    with running(web_app.create_app({"slow": item})) as address:

        def post() -> dict:
            request = urllib.request.Request(
                f"{address}/api/slow/predict",
                data=b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.bin"\r\n\r\n'
                b"abc\r\n--b--\r\n",
                headers={"Content-Type": "multipart/form-data; boundary=b"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.load(response)

        answers = []
        callers = [threading.Thread(target=lambda: answers.append(post())) for _ in range(2)]
        for caller in callers:
            caller.start()
        assert entered.wait(timeout=60)
        with urllib.request.urlopen(f"{address}/api/health", timeout=30) as response:
            assert json.load(response)["status"] == "ok"
        assert busy["now"] == 1  # Health answered while a model call was still running.
        time.sleep(0.3)  # Room for the second call to enter too, were the calls not taking turns.
        assert busy["now"] == 1
        release.set()
        for caller in callers:
            caller.join(timeout=60)
    assert answers == [{"input": "x.bin", "answer": 42}] * 2
    assert busy["most"] == 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_command_answers_on_localhost_and_stops_on_sigterm(tmp_path):
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "common", "serve", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "MODELS_DIR": str(tmp_path / "models")},
    )
    try:
        deadline = time.monotonic() + 120
        health = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5) as response:
                    health = json.load(response)
                break
            except OSError:
                time.sleep(0.5)
        assert health is not None, server.stdout.read() if server.poll() is not None else "no answer"
        # From a clean clone every project answers with its shipped model.
        # (A user's own project without a trained model is listed as unavailable; not these three.)
        shipped = {"mnist", "emojify", "stock"}
        assert shipped <= set(health["projects"]) and not shipped & set(health["unavailable"])
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/stock/forecast?days=2", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert len(json.load(response)["forecast"]) == 2
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
        output = server.stdout.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert "mnist: shipped model (no run promoted): models/pretrained/mnist/model.keras" in output
    assert "recorded test_accuracy 0.9950" in output and "stock: shipped model" in output
    assert "Traceback" not in output


def test_a_project_without_a_model_answers_503_saying_how_to_train_one(models_dir, monkeypatch):
    from common.core import runs
    from common.serving import app as web_app

    monkeypatch.setattr(runs, "pretrained_dir", lambda project: models_dir / "nothing-shipped" / project)
    served, unavailable = web_app.load_projects(["stock"])
    assert served == {} and "no trained stock model" in unavailable["stock"]
    with TestClient(web_app.create_app(served, unavailable)) as client:
        refused = client.post("/api/stock/forecast")
        assert refused.status_code == 503
        assert "stock is not served: no trained stock model" in refused.json()["error"]


def test_no_answer_names_a_folder_of_the_server(models_dir, cli, monkeypatch, tmp_path):
    """Run folders under a temporary folder, a stock model trained on a CSV there, a project whose
    model cannot be loaded: neither that folder nor the repository's own is in any answer (health,
    the 503, each project's answer, an error naming the configured CSV)."""
    from common.core import runs
    from common.serving import app as web_app

    csv = tmp_path / "data" / "prices.csv"
    csv.parent.mkdir()
    days = 300
    prices = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0.0003, 0.012, days)))
    dates = [
        f"{date:%Y-%m-%d}" for date in np.arange("2017-01-02", days * 2, dtype="datetime64[D]").astype(object)
    ]
    csv.write_text("Date,Close\n" + "".join(f"{date},{price}\n" for date, price in zip(dates, prices)))
    tiny = ["data.window=10", "model.units=[4]", "train.epochs=1", "train.batch_size=32"]
    trained = cli(
        "train", "stock", "--set", f"data.path={csv}", *(f"--set={item}" for item in tiny), "--promote"
    )
    assert trained.code == 0, trained.stderr
    served, _ = web_app.load_projects(["mnist", "emojify", "stock"])
    shipped = runs.pretrained_dir
    broken = models_dir / "shipped"
    (broken / "emojify").mkdir(parents=True)
    (broken / "emojify" / "model.keras").write_bytes(b"not a model")
    monkeypatch.setattr(
        runs, "pretrained_dir", lambda name: broken / name if name == "emojify" else shipped(name)
    )
    _, unavailable = web_app.load_projects(["emojify"])
    assert str(tmp_path) in unavailable["emojify"]  # What the terminal is told names the file.

    answers = []
    with TestClient(web_app.create_app(served), raise_server_exceptions=False) as client:
        answers.append(client.get("/api/health"))
        answers.append(upload(client, "/api/mnist/predict", drawn_digit(tmp_path / "seven.png")))
        answers.append(upload(client, "/api/emojify/predict", HOPPER, annotated="true"))
        answers.append(client.post("/api/stock/forecast", params={"days": 2, "history": 3}))
        csv.rename(tmp_path / "moved.csv")  # The configured series is gone: the error names it.
        answers.append(client.post("/api/stock/forecast", params={"days": 2}))
    with TestClient(web_app.create_app({}, unavailable), raise_server_exceptions=False) as client:
        answers.append(client.get("/api/health"))
        answers.append(client.post("/api/emojify/predict", files={"file": ("a.png", b"x", "image/png")}))
    assert [answer.status_code for answer in answers] == [200, 200, 200, 200, 400, 200, 503]
    for answer in answers:
        for folder in {str(tmp_path), str(tmp_path.resolve()), str(ROOT)}:
            assert folder not in answer.text, answer.text[:2000]
    health = answers[0].json()["projects"]
    assert health["stock"]["data_source"].startswith("prices.csv, column Close")
    assert answers[3].json()["input"].startswith("prices.csv, column Close")
    assert "'prices.csv', which is not here" in answers[4].json()["error"]
    reason = "$MODELS_DIR/shipped/emojify/model.keras: not a Keras model file"
    assert answers[5].json()["unavailable"]["emojify"].startswith(reason)
    assert reason in answers[6].json()["error"]


def test_a_text_shown_to_clients_keeps_addresses_and_cuts_paths(models_dir):
    from common.core.paths import shown_text

    assert (
        shown_text(f"{ROOT}/data/stock/a.csv: bad, and /srv/x/b.csv too")
        == "data/stock/a.csv: bad, and b.csv too"
    )
    assert shown_text(f"{models_dir}/stock/run/model.keras") == "$MODELS_DIR/stock/run/model.keras"
    kept = "see https://example.com/a/b and/or 10/20 (arch.data.sp500)"
    assert shown_text(kept) == kept


def _through_upload_limit(limit: int, chunks: list[bytes], content_length: int | None = None) -> dict:
    """Sends a request body of ``chunks``, each its own ASGI ``http.request`` message (as a
    chunked upload arrives), through the upload limit to an app that reads the whole body and
    answers how many bytes it got. Returns the status, the answer, and how many messages were
    read and whether the app was reached."""
    import asyncio

    from common.serving.app import UploadLimit

    headers = [(b"content-type", b"application/octet-stream")]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    scope = {"type": "http", "method": "POST", "path": "/upload", "headers": headers,
             "query_string": b"", "http_version": "1.1"}  # fmt: skip
    messages = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]
    state = {"read": 0, "app_reached": False}
    sent: list[dict] = []

    async def receive() -> dict:
        if state["read"] < len(messages):
            state["read"] += 1
            return messages[state["read"] - 1]
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    async def reads_everything(scope, receive, send) -> None:
        state["app_reached"] = True
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": json.dumps({"bytes": len(body)}).encode()})

    asyncio.run(UploadLimit(reads_everything, max_bytes=limit)(scope, receive, send))
    [start] = [message for message in sent if message["type"] == "http.response.start"]
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    return {"status": start["status"], "answer": json.loads(body), **state}


def test_the_upload_limit_counts_every_chunk_of_a_body_together():
    # Three chunks of 4 bytes, each under a limit of 10: their sum is over it, refused at the
    # third, and the fourth is never read.
    refused = _through_upload_limit(10, [b"a" * 4] * 4)
    assert refused["status"] == 413 and "larger than" in refused["answer"]["error"]
    assert refused["read"] == 3
    # Exactly the limit passes whole; one byte more does not.
    assert _through_upload_limit(10, [b"a" * 4, b"b" * 4, b"c" * 2]) == {
        "status": 200, "answer": {"bytes": 10}, "read": 3, "app_reached": True,
    }  # fmt: skip
    assert _through_upload_limit(10, [b"a" * 4, b"b" * 4, b"c" * 3])["status"] == 413
    assert _through_upload_limit(10, [b"a" * 11])["status"] == 413
    # An empty body, and a last empty message after the data, count nothing.
    assert _through_upload_limit(10, [b""])["answer"] == {"bytes": 0}
    assert _through_upload_limit(10, [b"a" * 10, b""])["answer"] == {"bytes": 10}


def test_a_content_length_over_the_limit_is_refused_before_the_body_is_read():
    over = _through_upload_limit(10, [b"a" * 11], content_length=11)
    assert over["status"] == 413 and over["read"] == 0 and not over["app_reached"]
    for length in (9, 10):
        under = _through_upload_limit(10, [b"a" * length], content_length=length)
        assert under["status"] == 200 and under["answer"] == {"bytes": length}
    # A Content-Length that understates the body does not get the rest past the count.
    lying = _through_upload_limit(10, [b"a" * 6, b"b" * 6], content_length=5)
    assert lying["status"] == 413 and lying["app_reached"]


def test_an_answer_already_begun_is_not_followed_by_a_second_413():
    """An app that starts answering before it reads the body: once the body goes over the limit,
    the answer it began stands alone; a 413 sent after it would be a second response."""
    import asyncio

    from common.serving.app import UploadLimit

    scope = {"type": "http", "method": "POST", "path": "/upload", "headers": [],
             "query_string": b"", "http_version": "1.1"}  # fmt: skip
    chunks = iter([{"type": "http.request", "body": b"a" * 11, "more_body": False}])
    sent: list[dict] = []

    async def receive() -> dict:
        return next(chunks)

    async def send(message: dict) -> None:
        sent.append(message)

    async def answers_first(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await receive()  # Over the limit: interrupted here.
        await send({"type": "http.response.body", "body": b"never sent"})

    asyncio.run(UploadLimit(answers_first, max_bytes=10)(scope, receive, send))
    assert sent == [{"type": "http.response.start", "status": 200, "headers": []}]


def _served(tmp_path: Path, name: str, predict) -> dict:
    """A project ``name`` whose model call is ``predict``, as create_app serves it."""
    from common.serving import app as web_app

    project = SimpleNamespace(
        name=name,
        folder=tmp_path,
        summary=lambda: f"{name} model",
        functions=SimpleNamespace(predict=predict),
        headline=Headline("test_accuracy"),
    )
    return {
        name: web_app.ServedProject(
            project, None, None, tmp_path / "model.keras", dict(web_app.DEFAULT_WEB_API)
        )
    }


def test_predicts_keyword_options_are_the_routes_query_parameters(monkeypatch, tmp_path):
    """The web API's parameters come from predict's signature, as the CLI's flags do; an option
    that names a file on the server's disk is not offered."""
    from common.serving import app as web_app

    def predict(
        model,
        inputs,
        config,
        *,
        days: Annotated[int, Option("days ahead")] = 5,
        out: Annotated[Path | None, Option("a picture on disk", web=False)] = None,
    ):
        return [{"input": inputs[0], "days": days, "out": out}]

    monkeypatch.setattr(web_app, "_swagger_ui_folder", lambda: None)
    with TestClient(web_app.create_app(_served(tmp_path, "options", predict))) as client:
        route = client.get("/openapi.json").json()["paths"]["/api/options/predict"]["post"]
        [parameter] = route["parameters"]
        assert parameter["name"] == "days" and parameter["description"] == "days ahead"
        assert parameter["schema"]["default"] == 5 and parameter["schema"]["type"] == "integer"
        answered = client.post("/api/options/predict?days=9", files={"file": ("a.bin", b"x")})
        assert answered.status_code == 200, answered.text
        assert answered.json()["days"] == 9 and answered.json()["out"] is None
        assert client.post("/api/options/predict", files={"file": ("a.bin", b"x")}).json()["days"] == 5
        refused = client.post("/api/options/predict?days=soon", files={"file": ("a.bin", b"x")})
        assert refused.status_code == 422


def test_a_404_keeps_a_routes_own_detail_and_an_unknown_route_gets_the_projects_message(
    monkeypatch, tmp_path
):
    from common.serving import app as web_app

    monkeypatch.setattr(web_app, "_swagger_ui_folder", lambda: None)
    answers = _served(tmp_path, "answers", lambda model, inputs, config: [{"answer": 1}])
    with TestClient(web_app.create_app(answers)) as client:
        unknown = client.get("/api/nosuch/predict")
        assert unknown.status_code == 404
        assert unknown.json() == {"error": "no such page or API route: /api/nosuch/predict"}
        wrong_method = client.get("/api/answers/predict")
        assert wrong_method.status_code == 405 and wrong_method.json() == {"error": "Method Not Allowed"}
        no_docs = client.get("/docs")
        assert no_docs.status_code == 404
        assert no_docs.json() == {
            "error": "no local Swagger UI (pip install swagger-ui-bundle-v2); see /openapi.json"
        }


def test_only_a_404_says_no_such_route_a_route_saying_not_found_otherwise_keeps_its_status():
    from fastapi import FastAPI
    from starlette.exceptions import HTTPException

    from common.serving import app as web_app

    app = FastAPI()
    web_app._add_error_handlers(app)

    @app.get("/gone")
    def gone() -> dict:
        raise HTTPException(400, "Not Found")

    with TestClient(app) as client:
        refused = client.get("/gone")
    assert refused.status_code == 400 and refused.json() == {"error": "Not Found"}


def test_an_exception_in_a_model_call_answers_500_naming_only_its_type(tmp_path):
    from common.serving import app as web_app

    def broken_predict(model, inputs, config):
        raise RuntimeError(f"secret detail from {inputs[0]}")

    with TestClient(
        web_app.create_app(_served(tmp_path, "broken", broken_predict)), raise_server_exceptions=False
    ) as client:
        failed = client.post(
            "/api/broken/predict", files={"file": ("x.bin", b"abc", "application/octet-stream")}
        )
    assert failed.status_code == 500
    assert failed.json() == {"error": "internal error: RuntimeError"}


def _post(address: str, route: str, name: str, data: bytes, headers: dict | None = None) -> tuple[int, dict]:
    """POSTs one file as the pages do; returns the status and the JSON answer."""
    body = (
        f'--b\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n\r\n'.encode()
        + data
        + b"\r\n--b--\r\n"
    )
    request = urllib.request.Request(
        address + route,
        data=body,
        headers={"Content-Type": "multipart/form-data; boundary=b", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def _digit_pictures(tmp_path: Path) -> dict[str, bytes]:
    """Drawn digits of different shapes, and a text file posing as a picture."""
    one = Image.new("RGB", (280, 280), "white")
    ImageDraw.Draw(one).line([(140, 40), (140, 240)], fill="black", width=20)
    zero = Image.new("RGB", (280, 280), "white")
    ImageDraw.Draw(zero).ellipse([80, 40, 200, 240], outline="black", width=20)
    pictures = {"seven.png": drawn_digit(tmp_path / "seven.png").read_bytes()}
    for name, image in (("one.png", one), ("zero.png", zero)):
        image.save(tmp_path / name)
        pictures[name] = (tmp_path / name).read_bytes()
    pictures["notes.png"] = b"not a picture at all\n" * 20
    return pictures


def test_concurrent_requests_share_a_model_call_and_each_gets_its_own_answer(tmp_path):
    from common.serving import app as web_app

    served, _ = web_app.load_projects(["mnist"], max_batch=64, max_wait_ms=2000)
    pictures = _digit_pictures(tmp_path)
    with running(web_app.create_app(served)) as address:
        alone = {name: _post(address, "/api/mnist/predict", name, data) for name, data in pictures.items()}
        calls_before = served["mnist"].batching.calls
        # Four callers for each picture, all at once: 16 requests, the text file's among them.
        callers = [(f"{index}-{name}", data) for index in range(4) for name, data in pictures.items()]
        start = threading.Barrier(len(callers))
        answers: dict[str, tuple[int, dict]] = {}

        def call(name: str, data: bytes) -> None:
            start.wait(timeout=30)
            answers[name] = _post(address, "/api/mnist/predict", name, data)

        threads = [threading.Thread(target=call, args=caller) for caller in callers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        calls = served["mnist"].batching.calls - calls_before
    assert alone["seven.png"][1]["label"] == 7 and alone["one.png"][1]["label"] == 1
    assert alone["zero.png"][1]["label"] == 0
    for name, (status, answer) in answers.items():
        expected_status, expected = alone[name.split("-", 1)[1]]
        if name.endswith("notes.png"):
            assert status == 400 and "not an image" in answer["error"] and name in answer["error"]
            continue
        assert status == 200 and answer == {**expected, "input": name}
    # The twelve pictures were answered in far fewer model calls than twelve.
    assert 1 <= calls <= 4, calls


def test_a_batching_model_answers_each_thread_its_own_rows():
    import keras

    from common.serving.batching import BatchingModel

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, kernel_initializer="ones")(inputs))
    batching = BatchingModel(model, max_batch=8, max_wait_s=1.0)
    rows = [np.full((1 + index % 3, 3), index, np.float32) for index in range(12)]
    answers: dict[int, np.ndarray] = {}

    def ask(index: int) -> None:
        with batching.request():
            answers[index] = batching.predict_on_batch(rows[index])

    threads = [threading.Thread(target=ask, args=(index,)) for index in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for index, row in enumerate(rows):
        np.testing.assert_allclose(answers[index], np.full((len(row), 2), 3.0 * index))
    # 24 rows, at most 8 a call: at least 3 calls, and fewer than one per request.
    assert batching.rows == 24 and 3 <= batching.calls < 12
    assert batching.input_shape == (None, 3)  # Anything else is the real model's.


def test_on_localhost_only_local_names_and_own_pages_are_answered(tmp_path):
    from common.serving import app as web_app

    answers = _served(tmp_path, "answers", lambda model, inputs, config: [{"answer": 1}])
    with running(web_app.create_app(answers)) as address:
        port = address.rsplit(":", 1)[1]
        # Loopback names, with any port: only the name tells a rebinding site from this machine.
        for host in ("localhost", f"LocalHost:{port}", f"127.0.0.1:{port}", "[::1]", "[::1]:1"):
            assert _post(address, "/api/answers/predict", "x.bin", b"abc", {"Host": host}) == (
                200, {"answer": 1},
            )  # fmt: skip
        # A rebinding site's name for 127.0.0.1 is refused, as is one ending like a loopback name.
        for host in (f"attacker.example:{port}", "localhost.attacker.example", f"127.0.0.1.nip.io:{port}"):
            status, answer = _post(address, "/api/answers/predict", "x.bin", b"abc", {"Host": host})
            assert status == 403 and "answers only to localhost" in answer["error"]
            request = urllib.request.Request(f"{address}/api/health", headers={"Host": host})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=30)
            assert refused.value.code == 403
        # A page of another site may not post; the server's own pages may.
        foreign = {"Origin": "http://attacker.example"}
        status, answer = _post(address, "/api/answers/predict", "x.bin", b"abc", foreign)
        assert status == 403 and answer == {
            "error": "refused: a page of another site (http://attacker.example) may not post here"
        }
        own = {"Origin": address, "Host": address.removeprefix("http://")}
        assert _post(address, "/api/answers/predict", "x.bin", b"abc", own) == (200, {"answer": 1})


def test_a_half_sent_request_is_dropped_after_the_read_timeout(tmp_path):
    from common.serving import app as web_app

    answers = _served(tmp_path, "answers", lambda model, inputs, config: [{"answer": 1}])
    with running(web_app.create_app(answers), seconds_to_send=0.5) as address:
        port = int(address.rsplit(":", 1)[1])
        halves = (
            b"POST /api/answers/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n",  # Headers cut short.
            b"POST /api/answers/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 500\r\n\r\n--b\r\n",
        )
        for half in halves:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
                connection.sendall(half)
                started = time.monotonic()
                assert connection.recv(1024) == b""  # Closed by the server...
                assert time.monotonic() - started < 5  # ...after the read timeout, not the test's.
        # Whole requests are still answered.
        assert _post(address, "/api/answers/predict", "x.bin", b"abc") == (200, {"answer": 1})


def test_a_request_the_server_stops_before_answering_gets_a_json_503(tmp_path):
    """Stopping (SIGTERM, Ctrl-C) waits a while for requests in progress, then gives up on them:
    each is answered with a JSON error saying so, not uvicorn's plain-text 500."""
    import uvicorn

    from common.serving import app as web_app

    entered, release = threading.Event(), threading.Event()

    def slow_predict(model, inputs, config):
        entered.set()
        release.wait(timeout=60)
        return [{"answer": 1}]

    config = web_app.server_config(web_app.create_app(_served(tmp_path, "slow", slow_predict)), quiet=True)
    config.timeout_graceful_shutdown = 0.5
    server = uvicorn.Server(config)
    sock = web_app.listening_socket("127.0.0.1", 0)
    address = f"http://127.0.0.1:{sock.getsockname()[1]}"
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    answers: list[tuple[int, str, bytes]] = []

    def call() -> None:
        request = urllib.request.Request(
            f"{address}/api/slow/predict",
            data=b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.bin"\r\n\r\n'
            b"a\r\n--b--\r\n",
            headers={"Content-Type": "multipart/form-data; boundary=b"},
            method="POST",
        )
        try:
            urllib.request.urlopen(request, timeout=60)
        except urllib.error.HTTPError as error:
            answers.append((error.code, error.headers["content-type"], error.read()))

    caller = threading.Thread(target=call)
    try:
        caller.start()
        assert entered.wait(timeout=60)
        server.should_exit = True  # What SIGTERM does.
        caller.join(timeout=30)
    finally:
        release.set()
        thread.join(timeout=30)
        sock.close()
    [(status, content_type, body)] = answers
    assert (status, content_type) == (503, "application/json"), body
    assert "the server is stopping" in json.loads(body)["error"]


def test_a_malformed_request_is_a_json_400(tmp_path):
    """uvicorn answers what it cannot parse as HTTP before the app sees it; that answer is JSON too."""
    from common.serving import app as web_app

    answers = _served(tmp_path, "answers", lambda model, inputs, config: [{"answer": 1}])
    with running(web_app.create_app(answers)) as address:
        port = int(address.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            reply = b""
            while chunk := connection.recv(65536):
                reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), reply
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body) == {"error": "invalid HTTP request: the server could not parse it"}


def test_a_port_in_use_is_one_line_before_any_model_loads():
    from tests.conftest import assert_one_line_error, run_subprocess

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # The model named does not exist: the port is refused before it would be looked for.
        result = run_subprocess("serve", "--port", str(port), "--model", "mnist=no-such-run", timeout=60)
    assert_one_line_error(result, f"port {port} on 127.0.0.1 is already in use")
    assert result.stdout == ""


def test_serving_beyond_this_machine_warns_in_one_line_and_batch_settings_are_checked():
    from tests.conftest import assert_one_line_error, run_subprocess

    # The named model does not exist, so nothing is served: the warning comes before it is looked for.
    result = run_subprocess(
        "serve", "--host", "0.0.0.0", "--port", str(_free_port()), "--model", "mnist=no-such-run"
    )
    assert_one_line_error(result, "--model mnist=no-such-run")
    [warning] = [line for line in result.stderr.splitlines() if "anyone who can reach this machine" in line]
    assert warning.startswith("WARNING") and "serving on 0.0.0.0" in warning
    for option in (["--max-batch", "0"], ["--max-wait-ms", "-1"]):
        assert_one_line_error(
            run_subprocess("serve", "--port", str(_free_port()), *option), "--max-batch must be"
        )


def test_serve_model_names_the_run_a_project_answers_with(cli, models_dir):
    from common.core import runs
    from common.serving import app as web_app
    from tests.conftest import assert_one_line_error, run_subprocess

    assert cli("train", "stock", "--set", "train.epochs=1").code == 0
    latest = runs.latest_run("stock")
    chosen = web_app.model_choices(["stock=latest"])
    served, unavailable = web_app.load_projects(["stock", "mnist"], chosen)
    assert served["stock"].model_file.resolve() == (latest / "model.keras").resolve()
    assert served["mnist"].model_file.parent.resolve() == runs.pretrained_dir("mnist").resolve()
    with TestClient(web_app.create_app(served, unavailable)) as client:
        health = client.get("/api/health").json()["projects"]
    # Paths as the repository or $MODELS_DIR reads them, never this machine's folders.
    assert health["stock"]["model"] == f"$MODELS_DIR/stock/{latest.name}/model.keras"
    assert health["mnist"]["model"] == "models/pretrained/mnist/model.keras"
    assert health["stock"]["described"][0].startswith(f"model: $MODELS_DIR/stock/{latest.name}/model.keras")
    assert str(models_dir) not in json.dumps(health) and str(ROOT) not in json.dumps(health)

    for spec, fragment in (("stock", "give PROJECT=RUN"), ("nosuch=latest", "nosuch")):
        assert_one_line_error(run_subprocess("serve", "--port", "1", "--model", spec), fragment)
    missing = run_subprocess("serve", "--port", str(_free_port()), "--model", "stock=no-such-run")
    assert_one_line_error(missing, "--model stock=no-such-run", "no such file or folder")


def test_with_the_onnx_runtime_the_batched_calls_are_onnxs_and_answer_as_keras_does(client, tmp_path):
    """`serve --runtime onnx`: the model converted, checked against Keras at start, and its answers
    the same as the Keras server's for the same upload."""
    from common.serving import app as web_app

    served, _ = web_app.load_projects(["mnist"], runtime="onnx")
    batching = served["mnist"].batching
    assert served["mnist"].runtime == "onnx" and batching.runner != batching.model.predict_on_batch
    digit = drawn_digit(tmp_path / "seven.png")
    with TestClient(web_app.create_app(served)) as onnx_client:
        answer = upload(onnx_client, "/api/mnist/predict", digit).json()
        assert onnx_client.get("/api/health").json()["projects"]["mnist"]["runtime"] == "onnx"
    expected = upload(client, "/api/mnist/predict", digit).json()
    assert answer["label"] == expected["label"] == 7
    assert [label for label, _ in answer["top3"]] == [label for label, _ in expected["top3"]]
    for (_, ours), (_, theirs) in zip(answer["top3"], expected["top3"]):
        assert ours == pytest.approx(theirs, abs=1e-4)
    assert batching.calls >= 1
