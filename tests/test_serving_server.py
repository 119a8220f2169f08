"""The HTTP server, started on 127.0.0.1 inside the tests: answers equal the Python API's, dynamic
batching merges concurrent requests, every 4xx case, graceful shutdown."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from serving_helpers import assert_same_outputs, trained_heads

from domain_distil.serving.bundle_build import build_bundle, read_job
from domain_distil.serving.bundle_load import load_bundle
from domain_distil.serving.predictor import Predictor
from domain_distil.serving.server import ServerSettings, create_app, make_server

REPO = Path(__file__).resolve().parent.parent
TEXTS = ["where is my order please", "hello thanks", "python code java code the", "refund cancel payment please"]


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory, tiny_teacher_dir) -> Path:
    jobs = trained_heads(tmp_path_factory, tiny_teacher_dir)
    return build_bundle(tiny_teacher_dir, [read_job(j) for j in jobs.values()], tmp_path_factory.mktemp("s") / "bundle")


@pytest.fixture(scope="module")
def predictor(bundle_dir) -> Predictor:
    return Predictor(load_bundle(bundle_dir))


@contextmanager
def running(predictor: Predictor, settings: ServerSettings) -> Iterator[tuple[str, object, threading.Thread]]:
    """The app on a free 127.0.0.1 port (socket bound here, so no race for the port), in a thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    app = create_app(predictor, settings)
    server = make_server(app, log_level="warning", graceful_timeout_s=10)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", app, thread
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
    assert not thread.is_alive(), "server did not shut down"


def test_answers_equal_python_api_and_health(predictor) -> None:
    with running(predictor, ServerSettings()) as (url, _, _):
        health = httpx.get(f"{url}/health").json()
        assert health["status"] == "ok" and health["heads"] == ["cc_intent/eng", "cc_intent/esp", "td_tags/eng"]
        assert health["encoder_hash"] == predictor.bundle.encoder_hash and health["langs"] == ["eng", "esp"]
        for filters in ({}, {"lang": "esp"}, {"task": ["td_tags"]}, {"lang": ["eng"], "task": "cc_intent"}):
            answer = httpx.post(f"{url}/predict", json={"texts": TEXTS, **filters}, timeout=30)
            assert answer.status_code == 200, answer.text
            expected = predictor.predict(TEXTS, langs=filters.get("lang"), tasks=filters.get("task"))
            assert_same_outputs(answer.json()["predictions"], expected)
        assert httpx.get(f"{url}/health").json()["texts"] == 4 * len(TEXTS)


def test_dynamic_batching_merges_concurrent_requests(predictor, monkeypatch) -> None:
    calls: list[int] = []
    real = predictor.predict_rows

    def recording(texts, keys):
        calls.append(len(texts))
        return real(texts, keys)

    monkeypatch.setattr(predictor, "predict_rows", recording)
    settings = ServerSettings(max_batch=16, max_wait_ms=400)
    answers: dict[int, httpx.Response] = {}
    with running(predictor, settings) as (url, app, _):
        def send(i: int) -> None:
            answers[i] = httpx.post(f"{url}/predict", json={"texts": [TEXTS[i % 4]], "lang": ["eng", "esp"][i % 2]}, timeout=30)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert app.state.batcher.texts == 8
    assert sum(calls) == 8 and len(calls) < 8 and max(calls) > 1  # requests shared encoder passes
    for i, answer in answers.items():
        assert answer.status_code == 200
        assert_same_outputs(answer.json()["predictions"], real([TEXTS[i % 4]], [predictor.select(langs=["eng", "esp"][i % 2])]))


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"texts": ["fine", "  "]}, 422, "texts[1] is empty"),
    ({"texts": ["x" * 101]}, 413, "texts[0] has 101 characters; the limit is 100"),
    ({"texts": ["a", "b", "c", "d"]}, 413, "4 texts in one request; the limit is 3"),
    ({"texts": ["hi"], "task": "sentiment"}, 422, "unknown task 'sentiment'"),
    ({"texts": ["hi"], "lang": ["eng", "fra"]}, 422, "unknown language 'fra'; the bundle has ['eng', 'esp']"),
    ({"texts": ["hi"], "lang": "esp", "task": "td_tags"}, 422, "no head serves lang='esp' and task='td_tags'"),
    ({"texts": []}, 422, "texts is empty"),
    ({"texts": "hello"}, 422, "texts: Input should be a valid list"),
    ({"texts": [1, 2]}, 422, "texts.0: Input should be a valid string"),
    ({"text": ["hi"]}, 422, "texts: Field required"),
    (b'{"texts": ["hi"', 400, "malformed JSON body"),
    (b"\xff\xfe", 400, "malformed JSON body"),
    ({"texts": ["y" * 90] * 3}, 413, "request body of 290 bytes exceeds the limit of 250 bytes"),
    # chunked upload, no content-length: the limit is enforced while reading the stream
    ([b'{"texts": ["', b"z" * 200, b'", "', b"z" * 100, b'"]}'], 413, "request body exceeds the limit of 250 bytes"),
])
def test_bad_requests_get_4xx_with_message(predictor, body, status, message) -> None:
    settings = ServerSettings(max_texts=3, max_chars=100, max_body_bytes=250)
    with running(predictor, settings) as (url, app, _):
        if isinstance(body, bytes | list):
            content = iter(body) if isinstance(body, list) else body
            answer = httpx.post(f"{url}/predict", content=content, headers={"content-type": "application/json"})
        else:
            answer = httpx.post(f"{url}/predict", json=body)
        assert answer.status_code == status, answer.text
        assert message in answer.json()["detail"]
        assert app.state.batcher.batches == 0  # rejected before the model


def test_a_body_not_declared_as_json_is_415_and_json_types_are_served(predictor) -> None:
    body = b'{"texts": ["where is my order please"], "lang": "eng", "task": "cc_intent"}'
    with running(predictor, ServerSettings()) as (url, app, _):
        def post(content_type: str | None) -> httpx.Response:
            headers = {} if content_type is None else {"content-type": content_type}
            return httpx.post(f"{url}/predict", content=body, headers=headers, timeout=30)

        for refused in ("text/plain", "application/x-www-form-urlencoded", None):
            answer = post(refused)
            assert answer.status_code == 415, (refused, answer.text)
            declared = f"content type {refused!r} is not JSON" if refused else "no content type"
            assert answer.json()["detail"] == f"{declared}; send the body with Content-Type: application/json"
        assert app.state.batcher.batches == 0  # refused before the body was read or the model ran
        expected = predictor.predict(["where is my order please"], langs="eng", tasks="cc_intent")
        for accepted in ("application/json; charset=utf-8", "Application/JSON", "application/problem+json"):
            answer = post(accepted)
            assert answer.status_code == 200, (accepted, answer.text)
            assert_same_outputs(answer.json()["predictions"], expected)


def test_deeply_nested_json_is_400_without_a_traceback(predictor, capfd) -> None:
    depth = 100_000  # 200 kB, under the body limit; far past the parser's recursion limit
    nested = b'{"texts": ' + b"[" * depth + b"]" * depth + b"}"
    with running(predictor, ServerSettings()) as (url, _, _):
        answer = httpx.post(f"{url}/predict", content=nested, headers={"content-type": "application/json"})
        assert answer.status_code == 400, answer.text
        assert answer.json()["detail"].startswith("JSON body nested too deeply")
        assert httpx.post(f"{url}/predict", json={"texts": TEXTS[:1]}, timeout=30).status_code == 200
    logged = capfd.readouterr().err  # uvicorn logs a failed request's traceback on stderr
    assert "Exception in ASGI application" not in logged and "maximum recursion depth exceeded" not in logged


def test_graceful_shutdown_answers_requests_in_flight(predictor, monkeypatch) -> None:
    real = predictor.predict_rows
    started = threading.Event()

    def slow(texts, keys):
        started.set()
        time.sleep(0.5)
        return real(texts, keys)

    monkeypatch.setattr(predictor, "predict_rows", slow)
    answers: list[httpx.Response] = []
    with running(predictor, ServerSettings(max_wait_ms=0)) as (url, _, thread):
        client = threading.Thread(target=lambda: answers.append(httpx.post(f"{url}/predict", json={"texts": TEXTS[:2]}, timeout=30)))
        client.start()
        assert started.wait(10)
        # Shutdown is asked while the batch is being computed; the context manager sets should_exit.
    client.join(10)
    assert not thread.is_alive()
    assert len(answers) == 1 and answers[0].status_code == 200
    assert_same_outputs(answers[0].json()["predictions"], real(TEXTS[:2], [predictor.select()] * 2))


def test_overload_is_shed_with_503(predictor, monkeypatch) -> None:
    real, started, release = predictor.predict_rows, threading.Event(), threading.Event()

    def blocked(texts, keys):
        started.set()
        assert release.wait(10)
        return real(texts, keys)

    monkeypatch.setattr(predictor, "predict_rows", blocked)
    answers: list[httpx.Response] = []
    with running(predictor, ServerSettings(max_wait_ms=0, max_pending=3)) as (url, _, _):
        client = threading.Thread(target=lambda: answers.append(httpx.post(f"{url}/predict", json={"texts": TEXTS[:2]}, timeout=30)))
        client.start()
        assert started.wait(10)
        assert httpx.get(f"{url}/health").json()["pending"] == 2
        busy = httpx.post(f"{url}/predict", json={"texts": TEXTS[:2]})
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert "server busy: 2 texts pending (limit 3)" in busy.json()["detail"]
        release.set()
        client.join(10)
        assert answers[0].status_code == 200 and httpx.get(f"{url}/health").json()["pending"] == 0
        assert httpx.post(f"{url}/predict", json={"texts": TEXTS[:3]}).status_code == 200


@pytest.mark.slow
def test_cli_serve_and_sigterm(bundle_dir, predictor, tmp_path) -> None:
    """``python run.py task=serve`` in a subprocess: serves, then exits cleanly on SIGTERM."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    command = [sys.executable, "run.py", "task=serve", f"serve.bundle={bundle_dir}", f"serve.port={port}",
               f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "server did not come up"
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        answer = httpx.post(f"{url}/predict", json={"texts": TEXTS, "lang": "eng"}, timeout=30)
        assert answer.status_code == 200
        assert_same_outputs(answer.json()["predictions"], predictor.predict(TEXTS, langs="eng"))
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # The lifespan shutdown ran (batcher drained and stopped) before the process ended.
    assert "batcher stopped after 1 batches, 4 texts" in output, output[-3000:]
