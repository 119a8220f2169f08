"""HTTP server (FastAPI + uvicorn) over a :class:`~serving.predictor.Predictor`: ``POST /predict``,
``GET /health``, its error codes and graceful shutdown are documented in docs/serving.md (``task=serve``).

Dynamic batching: one worker takes the first queued request, collects more for up to
``max_wait_ms`` or ``max_batch`` texts, and runs them as one predictor call (one encoder pass, each
request keeping its own head filters) in a single model thread, off the event loop, so the server
keeps accepting and validating requests meanwhile. Beyond ``max_pending`` waiting texts a request
gets 503, so an overload is shed instead of queued without bound.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict, ValidationError

from domain_distil.serving.predictor import Predictor, UnknownFilterError

log = logging.getLogger(__name__)

Outputs = list[list[dict[str, Any]]]
RunBatch = Callable[[list[str], list[list[str]]], Outputs]


@dataclass(frozen=True)
class ServerSettings:
    max_batch: int = 64  # texts per encoder pass across requests
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for company
    max_texts: int = 64  # per request
    max_chars: int = 10_000  # per text
    max_body_bytes: int = 1 << 20
    max_pending: int = 1024  # texts accepted but not answered yet; beyond it: 503, retry later

    def __post_init__(self) -> None:
        sizes = (self.max_batch, self.max_texts, self.max_chars, self.max_body_bytes, self.max_pending)
        if min(sizes) < 1 or self.max_wait_ms < 0:
            raise ValueError(f"invalid server settings: {self}")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    texts: list[str]
    lang: str | list[str] | None = None
    task: str | list[str] | None = None


@dataclass
class _Pending:
    texts: list[str]
    keys: list[list[str]]
    future: asyncio.Future


class DynamicBatcher:
    """Collects concurrent requests into one ``run_batch`` call (see module docstring)."""

    def __init__(self, run_batch: RunBatch, max_batch: int, max_wait_ms: float) -> None:
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.batches = 0
        self.texts = 0
        self.pending = 0  # texts submitted and not answered yet (queued or being computed)
        self._queue: asyncio.Queue[_Pending | None] | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Finish what is queued, then stop the worker and the model thread."""
        if self._queue is not None and self._worker is not None:
            await self._queue.put(None)
            await self._worker
        self._executor.shutdown(wait=True)

    async def submit(self, texts: list[str], keys: list[list[str]]) -> Outputs:
        if self._queue is None:
            raise RuntimeError("the batcher is not running")
        future = asyncio.get_running_loop().create_future()
        self.pending += len(texts)
        try:
            await self._queue.put(_Pending(texts, keys, future))
            return await future
        finally:
            self.pending -= len(texts)

    async def _collect(self, first: _Pending, carry: list[_Pending]) -> tuple[list[_Pending], bool]:
        """``first`` plus whatever arrives within ``max_wait`` while the batch has room. A request
        that would overflow the batch is carried over to the next one. Returns (batch, stopping)."""
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        batch, size = [first], len(first.texts)
        deadline = loop.time() + self.max_wait
        while size < self.max_batch:
            timeout = deadline - loop.time()
            try:
                item = self._queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(self._queue.get(), timeout)
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                break
            if item is None:
                return batch, True
            if size + len(item.texts) > self.max_batch:
                carry.append(item)
                break
            batch.append(item)
            size += len(item.texts)
        return batch, False

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        carry: list[_Pending] = []
        stopping = False
        while not stopping or carry:
            first = carry.pop(0) if carry else await self._queue.get()
            if first is None:
                break
            batch, stop_now = await self._collect(first, carry)
            stopping = stopping or stop_now
            texts = [t for p in batch for t in p.texts]
            keys = [k for p in batch for k in p.keys]
            try:
                outputs = await loop.run_in_executor(self._executor, self.run_batch, texts, keys)
            except Exception as error:  # noqa: BLE001  every waiting request gets the error
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                continue
            self.batches += 1
            self.texts += len(texts)
            start = 0
            for pending in batch:
                if not pending.future.done():  # a client that went away cancels its future
                    pending.future.set_result(outputs[start : start + len(pending.texts)])
                start += len(pending.texts)


def _is_json_media_type(content_type: str | None) -> bool:
    """``application/json`` or a ``+json`` type (``application/problem+json``), any parameters
    (``; charset=utf-8``): what a client that sends JSON declares. Anything else, a missing header
    included, is refused, so a form post or plain text is never guessed at."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HTTPException(400, f"malformed JSON body: {error}") from None
    except RecursionError:  # the parser recurses once per nesting level; the schema needs two
        raise HTTPException(400, "JSON body nested too deeply: expected {\"texts\": [str, ...], ...}") from None


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"request body exceeds the limit of {limit} bytes")
    return bytes(body)


def _validate(payload: Any, settings: ServerSettings) -> PredictRequest:
    try:
        request = PredictRequest.model_validate(payload)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors())
        raise HTTPException(422, f'expected {{"texts": [str, ...], "lang": str|[str]|null, "task": str|[str]|null}}: {problems}') from None
    if not request.texts:
        raise HTTPException(422, "texts is empty: send at least one text")
    if len(request.texts) > settings.max_texts:
        raise HTTPException(413, f"{len(request.texts)} texts in one request; the limit is {settings.max_texts}")
    for i, text in enumerate(request.texts):
        if not text.strip():
            raise HTTPException(422, f"texts[{i}] is empty")
        if len(text) > settings.max_chars:
            raise HTTPException(413, f"texts[{i}] has {len(text)} characters; the limit is {settings.max_chars}")
    return request


def create_app(predictor: Predictor, settings: ServerSettings | None = None) -> FastAPI:
    settings = settings or ServerSettings()
    batcher = DynamicBatcher(predictor.predict_rows, settings.max_batch, settings.max_wait_ms)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        log.info("serving %d heads (%s); batches of up to %d texts, %.1f ms wait", len(predictor.specs),
                 ", ".join(sorted(predictor.specs)), settings.max_batch, settings.max_wait_ms)
        try:
            yield
        finally:
            await batcher.stop()
            log.info("batcher stopped after %d batches, %d texts", batcher.batches, batcher.texts)

    app = FastAPI(title="domain-distil classifiers", lifespan=lifespan)
    app.state.batcher = batcher
    app.state.settings = settings

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "encoder_hash": predictor.bundle.encoder_hash, "heads": sorted(predictor.specs),
                "tasks": predictor.bundle.tasks, "langs": predictor.bundle.langs, "batches": batcher.batches, "texts": batcher.texts, "pending": batcher.pending}

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Outputs]:
        content_type = request.headers.get("content-type")
        if not _is_json_media_type(content_type):
            declared = f"content type {content_type!r} is not JSON" if content_type else "no content type"
            raise HTTPException(415, f"{declared}; send the body with Content-Type: application/json")
        parsed = _validate(_parse_json(await _read_body(request, settings.max_body_bytes)), settings)
        try:
            keys = predictor.select(parsed.lang, parsed.task)
        except UnknownFilterError as error:
            raise HTTPException(422, str(error)) from None
        if not keys:
            raise HTTPException(422, f"no head serves lang={parsed.lang!r} and task={parsed.task!r} together; "
                                     f"heads: {sorted(predictor.specs)}")
        if batcher.pending + len(parsed.texts) > settings.max_pending:
            raise HTTPException(503, f"server busy: {batcher.pending} texts pending (limit {settings.max_pending}); retry later",
                                headers={"Retry-After": "1"})
        outputs = await batcher.submit(list(parsed.texts), [keys] * len(parsed.texts))
        return {"predictions": outputs}

    return app


def make_server(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, graceful_timeout_s: int | None = 30,
                log_level: str = "info"):
    """A uvicorn server; ``server.run()`` blocks (SIGINT/SIGTERM shut it down gracefully), tests run
    it in a thread with a pre-bound socket and set ``server.should_exit``."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=graceful_timeout_s, lifespan="on")
    return uvicorn.Server(config)

