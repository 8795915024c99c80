"""``python -m common serve``: one local web app and HTTP API for every project that has a model.

Each project's page and API route is the project's own ``predict`` behind a route: an upload is
written to a private temporary file (its client-given name is never a path) and handed to
``project.functions.predict(model, [file], config, **options)``, exactly as ``python -m common
predict`` does, so the JSON is the same as ``predict --json`` and no preprocessing is written
twice. Which route a project gets and what it uploads come from its declared ``web_api`` (see
:class:`common.core.project.Project`); its query parameters are ``predict``'s own keyword options
(:func:`common.core.project.predict_options`), as are its ``predict`` flags on the command line.

Each model is loaded once at start, by the same default-model rule as ``predict``
(:func:`common.core.runs.default_model_dir`: the promoted run, else the shipped model), or the run
``--model PROJECT=RUN`` names. Requests run in FastAPI's threadpool (the endpoints are plain
``def``), so the event loop keeps answering: each reads and preprocesses its own upload in its
own thread, and the model calls of concurrent requests are gathered for a few milliseconds into
one batched call (:mod:`common.serving.batching`). A project that opts out (``"batched": False`` in its
``web_api``) is answered one request at a time.

On a loopback address the server answers only requests that name it by a loopback name (no DNS
rebinding), refuses POSTs from another origin's pages, and drops a client that has not sent its
whole request within :data:`SECONDS_TO_SEND_A_REQUEST`.

Example:
    python -m common serve --port 8000     # then open http://127.0.0.1:8000/
"""

from __future__ import annotations

import asyncio
import base64
import errno
import functools
import inspect
import io
import ipaddress
import json
import logging
import socket
import tempfile
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from common.core import paths, registry, runs
from common.core.errors import UserError
from common.core.project import Project, predict_options
from common.kit.images import picture_memory
from common.serving.batching import BatchingModel

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
# A photo from a phone is a few megabytes; a drawing or a price CSV far less.
MAX_UPLOAD_BYTES = 10 * 2**20
PAGE_FILE = "page.html"
# A client must send its whole request (headers and body) within this many seconds of connecting
# (or of its previous answer): half-sent requests cannot pile up.
SECONDS_TO_SEND_A_REQUEST = 10.0
# The annotated picture (emojify's ``?annotated=true``) comes back at most this many pixels on its
# longer side: a page shows it at about that size, and a phone photo at full resolution made a
# reply of many megabytes.
ANNOTATED_MAX_SIDE = 800
# Requests handled at once; each one's reading and preprocessing runs in its own thread.
REQUEST_THREADS = 64
MAX_BATCH = 64
MAX_WAIT_MS = 5.0
# What answers the batched model calls: Keras' predict_on_batch, or the same model converted to
# ONNX and run by ONNX Runtime (bench/bench_serve.py measures both; Keras was faster at 64 inputs).
RUNTIMES = ("keras", "onnx")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


@dataclass
class ServedProject:
    """A project with its model loaded, ready to answer."""

    project: Project
    model: Any
    config: Any
    model_file: Path
    web_api: dict
    batching: BatchingModel | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    runtime: str = "keras"  # what answers the batched model calls

    @property
    def route(self) -> str:
        return f"/api/{self.project.name}/{self.web_api['verb']}"

    def health(self) -> dict:
        """Which model answers, what it was trained on and its recorded test score, with no folder of
        the server named (:func:`common.core.paths.shown_text`): a run trained on a CSV records its path."""
        metrics = runs.read_metrics(self.model_file.parent)
        key = self.project.headline.metric
        score = {"metric": key, "value": metrics[key]} if key in metrics else None
        return {
            "model": paths.shown_path(self.model_file),
            "described": [
                paths.shown_text(line)
                for line in runs.describe_model(
                    self.project, self.model_file, chosen_by_default=True, show_path=paths.shown_path
                )
            ],
            "promoted": self.model_file.parent.resolve() != runs.pretrained_dir(self.project.name).resolve(),
            "data_source": paths.shown_text(str(metrics["data_source"]))
            if "data_source" in metrics
            else None,
            "stand_in_data": bool(metrics.get("stand_in_data")),
            "score": score,
            "baseline_accuracy": metrics.get("baseline_accuracy"),
            # A model no better than its trivial baseline, in words: the page shows it beside the score.
            "no_better": self.project.headline.no_better(metrics) or None,
            "api": self.route,
            "page": f"/{self.project.name}",
            "runtime": self.runtime,
        }


DEFAULT_WEB_API = {
    "verb": "predict",
    "upload": ".bin",
    "upload_required": True,
    "batched": True,
}


def web_api(project: Project) -> dict:
    """The declared ``web_api`` over the defaults: one required upload to ``/api/<name>/predict``."""
    return {**DEFAULT_WEB_API, **project.served_api()}


def load_projects(
    names: list[str] | None = None,
    models: dict[str, str] | None = None,
    max_batch: int = MAX_BATCH,
    max_wait_ms: float = MAX_WAIT_MS,
    runtime: str = "keras",
) -> tuple[dict[str, ServedProject], dict[str, str]]:
    """Loads each project's model (all projects by default) once: the run ``models`` names for
    it (as ``--model`` names one), else its default model. With ``runtime="onnx"`` the batched
    calls of each batched project's model are answered by ONNX Runtime
    (:func:`common.serving.export.onnx_runner`); a project answered one request at a time keeps Keras.

    Returns:
        ``(served, unavailable)``: the projects that have a model, and for each one that has
        none (or whose default model cannot be loaded) the one-line reason.

    Raises:
        UserError: a model that ``models`` names cannot be loaded.
    """
    from common.serving import loading  # Imports Keras: only when a server is really started.

    models = models or {}
    served, unavailable = {}, {}
    for name in names or registry.project_names():
        project = registry.get_project(name)
        try:
            model, config, model_file = loading.load_saved(project, models.get(name), announce=False)
        except UserError as error:
            if name in models:
                raise UserError(f"--model {name}={models[name]}: {error}") from None
            unavailable[name] = str(error)
            continue
        item = ServedProject(project, model, config, model_file, web_api(project))
        if item.web_api["batched"] and hasattr(model, "predict_on_batch"):
            serving = project.functions.serving_model
            served_model = serving(model, config) if serving is not None else model
            runner = None
            if runtime == "onnx":
                from common.serving.export import onnx_runner  # The export extra: only when asked for.

                runner = onnx_runner(served_model)
                item.runtime = "onnx"
            item.batching = BatchingModel(served_model, max_batch, max_wait_ms / 1000, runner)
        served[name] = item
    return served, unavailable


def model_choices(specs: list[str]) -> dict[str, str]:
    """``--model PROJECT=RUN`` options as ``{project: run}``, the projects checked."""
    chosen = {}
    for spec in specs:
        name, equals, run = spec.partition("=")
        if not equals or not run:
            raise UserError(f"--model {spec}: give PROJECT=RUN, e.g. --model mnist=latest")
        registry.get_project(name)  # Its error names the projects there are.
        chosen[name] = run
    return chosen


def create_app(
    served: dict[str, ServedProject],
    unavailable: dict[str, str] | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
) -> FastAPI:
    """The web app: pages, ``/api/<project>/<verb>``, ``/api/health`` and offline ``/docs``."""
    # A reason names the model file that could not be loaded: shown without the server's folders.
    unavailable = {name: paths.shown_text(reason) for name, reason in (unavailable or {}).items()}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = REQUEST_THREADS
        yield

    app = FastAPI(
        title="Keras project template",
        summary="The projects' own predict behind HTTP routes",
        docs_url=None,  # Served below from a local copy of Swagger UI: no CDN.
        redoc_url=None,
        lifespan=lifespan,
    )
    _add_error_handlers(app)
    app.add_middleware(UploadLimit, max_bytes=max_upload_bytes)
    app.add_middleware(LocalGuard)
    app.add_middleware(AnswerWhenStopped)  # Outermost of ours: it sees every request's end.
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
    swagger = _swagger_ui_folder()
    if swagger is not None:
        app.mount("/swagger-ui", StaticFiles(directory=swagger), name="swagger")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        if swagger is None:
            raise HTTPException(
                404, "no local Swagger UI (pip install swagger-ui-bundle-v2); see /openapi.json"
            )
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Keras project template: API",
            swagger_js_url="/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/swagger-ui/favicon-32x32.png",
        )

    @app.get("/api/health", summary="Each project: which model answers, its data and recorded score")
    def health() -> dict:
        return {
            "status": "ok",
            "max_upload_bytes": max_upload_bytes,
            "projects": {name: item.health() for name, item in served.items()},
            "unavailable": unavailable,
        }

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    for name in registry.project_names():
        page = registry.get_project(name).folder / PAGE_FILE
        if not page.is_file() and name in served:
            # A project without a page of its own (a new one) gets the plain upload page.
            page = WEB_DIR / "generic.html"
        if page.is_file():
            app.add_api_route(f"/{name}", _page_endpoint(page), methods=["GET"], include_in_schema=False)
    for item in served.values():
        app.add_api_route(
            item.route,
            _predict_endpoint(item),
            methods=["POST"],
            summary=f"{item.project.name}: {item.project.summary()}",
            description=f"The same JSON as `python -m common predict {item.project.name} --json`.",
        )
    for name, reason in unavailable.items():
        route = f"/api/{name}/{web_api(registry.get_project(name))['verb']}"
        app.add_api_route(
            route, _unavailable_endpoint(name, reason), methods=["POST"], include_in_schema=False
        )
    return app


def _unavailable_endpoint(name: str, reason: str):
    def endpoint() -> JSONResponse:
        return JSONResponse({"error": f"{name} is not served: {reason}"}, status_code=503)

    return endpoint


def _page_endpoint(page: Path):
    def endpoint() -> FileResponse:
        return FileResponse(page, media_type="text/html")

    return endpoint


def _predict_endpoint(item: ServedProject):
    """An endpoint whose signature (and so its OpenAPI entry) holds the project's own options."""
    spec = item.web_api

    def endpoint(**arguments: Any) -> dict:
        upload: UploadFile | None = arguments.pop("file", None)
        picture = arguments.pop("annotated", False)
        return predict_upload(item, upload, arguments, picture)

    parameters = [
        inspect.Parameter(
            "file",
            inspect.Parameter.KEYWORD_ONLY,
            default=File(... if spec["upload_required"] else None, description=spec.get("upload_help")),
            annotation=UploadFile if spec["upload_required"] else UploadFile | None,
        )
    ]
    for option in predict_options(item.project.functions.predict):
        if option.web:
            parameters.append(
                inspect.Parameter(
                    option.name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=Query(option.default, description=option.help),
                    annotation=option.type,
                )
            )
    if spec.get("picture_option"):
        parameters.append(
            inspect.Parameter(
                "annotated",
                inspect.Parameter.KEYWORD_ONLY,
                default=Query(False, description="also return the annotated picture (base64 PNG data URL)"),
                annotation=bool,
            )
        )
    endpoint.__signature__ = inspect.Signature(parameters, return_annotation=dict)  # type: ignore[attr-defined]
    endpoint.__name__ = f"{item.project.name}_{spec['verb']}"
    return endpoint


def predict_upload(
    item: ServedProject, upload: UploadFile | None, options: dict, picture: bool = False
) -> dict:
    """Runs the project's own ``predict`` on one uploaded file (or none, where the project allows).

    The upload is copied into a fresh private folder under a fixed name; its client-given name is
    shown back as ``input`` and never used as a path. With ``picture``, the project's picture
    option (emojify's ``--out``) writes there too, and comes back as a base64 PNG data URL.

    Raises:
        UserError: the upload could not be read, or the project refused it.
    """
    spec = item.web_api
    with tempfile.TemporaryDirectory(prefix="serve-") as folder:
        inputs: list[str] = []
        shown_as = ""
        if upload is not None:
            path = Path(folder) / f"upload{spec['upload']}"
            with path.open("wb") as stream:
                while chunk := upload.file.read(2**20):
                    stream.write(chunk)
            if path.stat().st_size == 0:
                raise UserError("the uploaded file is empty")
            inputs = [str(path)]
            shown_as = _client_name(upload.filename)
        if picture and spec.get("picture_option"):
            options = {**options, spec["picture_option"]: Path(folder) / "annotated.png"}
        # Batched: requests run side by side, their model calls gathered; else one at a time.
        # predict yields lazily, so it runs whole inside the block.
        # A picture it reads waits until it fits in the memory pictures may take, and keeps its
        # share until the answer is written (common.kit.images.picture_memory).
        model = item.batching or item.model
        try:
            with picture_memory.request(), item.batching.request() if item.batching else item.lock:
                results = list(item.project.functions.predict(model, inputs, item.config, **options))
        except UserError as error:
            message = _renamed(str(error), inputs[0], shown_as) if inputs else str(error)
            raise UserError(message, choices=error.choices) from None
        result = results[0]
        if upload is not None:
            result = _renamed(result, inputs[0], shown_as)
        result = _shown(result)  # A forecast of the configured series names its CSV, for one.
        if "error" in result:
            raise UserError(result["error"])
        if picture and spec.get("picture_option") and "annotated" in result:
            result["annotated"] = _display_data_url(Path(folder) / "annotated.png")
        return result


def _display_data_url(path: Path, max_side: int = ANNOTATED_MAX_SIDE) -> str:
    """The picture at ``path`` as a base64 PNG data URL, scaled down to at most ``max_side`` pixels
    on its longer side: the size a page shows it at, whatever the size of the photo it was drawn on."""
    with Image.open(path) as opened:
        picture = opened.convert("RGB")
    picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _shown(result: Any) -> Any:
    """The result with every text in it as a client is shown it (:func:`common.core.paths.shown_text`)."""
    if isinstance(result, str):
        return paths.shown_text(result)
    if isinstance(result, dict):
        return {key: _shown(value) for key, value in result.items()}
    if isinstance(result, list):
        return [_shown(value) for value in result]
    return result


def _client_name(filename: str | None) -> str:
    """The upload's name as the client gave it, for display only: its last part, at most 100
    characters."""
    name = PurePosixPath((filename or "").replace("\\", "/")).name
    return name[:100] or "upload"


def _renamed(result: Any, private_path: str, shown_as: str) -> Any:
    """The result with the temporary file's path replaced by the client's name, everywhere."""
    if isinstance(result, str):
        return result.replace(private_path, shown_as)
    if isinstance(result, dict):
        return {key: _renamed(value, private_path, shown_as) for key, value in result.items()}
    if isinstance(result, list):
        return [_renamed(value, private_path, shown_as) for value in result]
    return result


class _TooLarge(Exception):
    pass


class UploadLimit:
    """Refuses a request body over ``max_bytes`` with 413 and a JSON error: at once when its
    Content-Length says so, else as soon as that many bytes have arrived (a chunked upload), so
    nothing larger is ever read into memory or spooled to disk."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = JSONResponse(
            {"error": f"the upload is larger than {self.max_bytes / 2**20:g} MB"}, status_code=413
        )
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            await refusal(scope, receive, send)
            return
        received = 0
        exceeded = started = False

        async def counting_receive() -> dict:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _TooLarge
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal started
            if exceeded:
                return  # FastAPI answers the interrupted body with its own 400; 413 says why.
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await refusal(scope, receive, send)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is this machine only."""
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class LocalGuard:
    """Refuses, with 403 and a JSON error, what a web page of another site could send.

    A request that reached the server on a loopback address must name it by a loopback name
    (``localhost``, ``127.0.0.1`` or ``[::1]``, with any port) in its Host header: a site whose
    name an attacker points at 127.0.0.1 (DNS rebinding) is refused. A POST (or any other unsafe
    method) whose ``Origin`` is not this server's own ``http://host:port`` (the page that sent it
    is another site's) is refused whatever the address.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        server_host = (scope.get("server") or ("",))[0]
        problem = None
        if is_loopback(str(server_host)) and not await names_loopback(scope, receive):
            problem = f"this server answers only to {', '.join(LOOPBACK_NAMES)}; the request named {host!r}"
        elif scope["method"] not in ("GET", "HEAD", "OPTIONS") and "origin" in headers:
            if headers["origin"] != f"{scope.get('scheme', 'http')}://{host}":
                problem = f"a page of another site ({headers['origin']}) may not post here"
        if problem is None:
            await self.app(scope, receive, send)
            return
        await JSONResponse({"error": f"refused: {problem}"}, status_code=403)(scope, receive, send)


async def names_loopback(scope: dict, receive: Any) -> bool:
    """Whether a request's Host header is one of :data:`LOOPBACK_NAMES` (any port), as Starlette's
    ``TrustedHostMiddleware`` parses and judges it. What the middleware would answer a refused
    request (a plain-text 400) is not sent: :class:`LocalGuard` answers every refusal alike, with a
    JSON error its pages and clients read."""
    trusted = False

    async def accepted(*_request: Any) -> None:
        nonlocal trusted
        trusted = True

    async def unsent(_message: Any) -> None:
        pass

    checked = TrustedHostMiddleware(accepted, allowed_hosts=LOOPBACK_NAMES, www_redirect=False)
    await checked(scope, receive, unsent)
    return trusted


class AnswerWhenStopped:
    """Answers a request that the server gives up on while stopping with 503 and a JSON error.

    On SIGTERM or Ctrl-C uvicorn waits a few seconds for requests in progress, then cancels them;
    the cancellation is not an ``Exception``, so no exception handler sees it, and uvicorn itself
    would answer a plain-text 500. A request already answering is left to be cut off.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except asyncio.CancelledError:
            if started:
                raise
            log.warning("stopping: %s %s was answered 503", scope["method"], scope["path"])
            # The task goes on to send this answer, then ends: nothing else of it is left to run.
            refusal = {
                "error": "the server is stopping before it answered; send the request again when it is back"
            }
            await JSONResponse(refusal, status_code=503, headers={"Connection": "close"})(
                scope, receive, send
            )


def _add_error_handlers(app: FastAPI) -> None:
    """Every error is ``{"error": "..."}`` with its status (and the ``choices`` a project's error
    offers, see :class:`UserError`), never a traceback page, and names no folder of the server (a
    project's error may name the CSV its config reads)."""

    @app.exception_handler(UserError)
    async def user_error(request: Request, error: UserError) -> JSONResponse:
        body: dict[str, Any] = {"error": paths.shown_text(str(error))}
        if error.choices:
            # What a page may offer to pick, e.g. a CSV's columns when the configured one is not there.
            body["choices"] = error.choices
        return JSONResponse(body, status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        message = str(error.detail)
        if error.status_code == 404 and message == "Not Found":
            message = f"no such page or API route: {request.url.path}"
        return JSONResponse({"error": message}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'][1:]) or problem['loc'][0]}: {problem['msg']}"
            for problem in error.errors()
        )
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error answering %s", request.url.path)
        return JSONResponse({"error": f"internal error: {type(error).__name__}"}, status_code=500)


def _swagger_ui_folder() -> Path | None:
    """Swagger UI's files from the ``swagger-ui-bundle-v2`` wheel, or None without it."""
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    folder = Path(str(swagger_ui_bundle.swagger_ui_path))
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def describe(served: dict[str, ServedProject], unavailable: dict[str, str]) -> list[str]:
    """One line per project for the terminal: the model that answers and its score, or why none."""
    lines = []
    for name, item in served.items():
        described = "; ".join(runs.describe_model(item.project, item.model_file, chosen_by_default=True))
        runtime = " (batched calls by ONNX Runtime)" if item.runtime == "onnx" else ""
        lines.append(f"{name}: {described} -> POST {item.route}{runtime}")
    lines += [f"{name}: not served: {reason}" for name, reason in unavailable.items()]
    return lines


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, before any model loads: a port in use is one line at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, so asyncio turns Nagle's algorithm off on each connection (it checks the
    # protocol), else an answer written in two parts waits for the client's delayed ACK (40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise UserError(
                f"port {port} on {host} is already in use (another server?); stop it or pass --port N"
            ) from None
        raise UserError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return sock


def server_config(app: Any, seconds_to_send: float = SECONDS_TO_SEND_A_REQUEST, quiet: bool = False) -> Any:
    """uvicorn's settings for ``app``, with the read timeout that drops half-sent requests."""
    import uvicorn

    return uvicorn.Config(
        app,
        http=functools.partial(_timed_protocol(), seconds_to_send=seconds_to_send),  # type: ignore[arg-type]
        log_level="warning" if quiet else "info",
        timeout_graceful_shutdown=5,
    )


@functools.cache
def _timed_protocol() -> type:
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request has not arrived whole within
    ``seconds_to_send`` of its start (or of the previous answer on the same connection)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    reading = (h11.IDLE, h11.SEND_BODY)

    class TimedH11Protocol(H11Protocol):
        def __init__(self, *args: Any, seconds_to_send: float, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.seconds_to_send = seconds_to_send
            self.read_timer: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state not in reading:
                self._disarm()  # The whole request is in.

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()  # The next request on this connection gets its own time.

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            if not self.transport.is_closing() and self.conn.their_state in reading:
                self.read_timer = self.loop.call_later(self.seconds_to_send, self._drop)

        def _disarm(self) -> None:
            if self.read_timer is not None:
                self.read_timer.cancel()
                self.read_timer = None

        def _drop(self) -> None:
            self.read_timer = None
            if self.conn.their_state in reading and not self.transport.is_closing():
                self.transport.close()

        def send_400_response(self, msg: str) -> None:
            """What h11 cannot parse, answered as every other error is: JSON (uvicorn's own is plain
            text, and it has no setting for it). ``msg`` is uvicorn's generic sentence; h11's own
            reason, which may quote the request, stays in the log."""
            body = json.dumps({"error": "invalid HTTP request: the server could not parse it"}).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            for event in (
                h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                h11.Data(data=body),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event))
            self.transport.close()

    return TimedH11Protocol


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    quiet: bool = False,
    models: list[str] | None = None,
    max_batch: int = MAX_BATCH,
    max_wait_ms: float = MAX_WAIT_MS,
    runtime: str = "keras",
) -> None:
    """Loads every project's model, says which answers, and serves until Ctrl-C or SIGTERM.

    Args:
        models: ``PROJECT=RUN`` choices (``--model``); other projects answer with their default.
        max_batch, max_wait_ms: the most rows one model call answers, and how long a request
            waits for others to share it (see :mod:`common.serving.batching`).
        runtime: what answers the batched calls, ``keras`` or ``onnx`` (see :data:`RUNTIMES`).
    """
    import uvicorn

    if max_batch < 1 or max_wait_ms < 0:
        raise UserError("--max-batch must be at least 1 and --max-wait-ms at least 0")
    chosen = model_choices(models or [])
    sock = listening_socket(host, port)
    try:
        if not is_loopback(host):
            log.warning(
                "serving on %s: anyone who can reach this machine can use it, without a password; "
                "use --host 127.0.0.1 unless a proxy in front of it checks who asks",
                host,
            )
        served, unavailable = load_projects(None, chosen, max_batch, max_wait_ms, runtime)
        if not served:
            raise UserError("no project has a trained model yet; train one first (e.g. make train-mnist)")
        for line in describe(served, unavailable):
            print(line, flush=True)
        shown_host = f"[{host}]" if ":" in host else host
        print(f"serving on http://{shown_host}:{port}/ (API docs: /docs; Ctrl-C stops)", flush=True)
        uvicorn.Server(server_config(create_app(served, unavailable), quiet=quiet)).run(sockets=[sock])
    finally:
        sock.close()
