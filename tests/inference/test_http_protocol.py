"""A request uvicorn cannot parse is answered in the API's JSON error envelope, over a real socket."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI

from cocoa.inference.http_protocol import EnvelopeHTTPProtocol


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    app = FastAPI()

    @app.post("/echo")
    async def echo(body: dict) -> dict:
        return body

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, http=EnvelopeHTTPProtocol,
                                           log_level="critical", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    thread.join(10)


def exchange(port: int, raw: bytes) -> list[tuple[int, bytes, dict[str, str]]]:
    """Send ``raw`` on one connection and split what comes back, until the server closes it, into
    (status, body, headers) responses."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    responses = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        responses.append((int(lines[0].split()[1]), rest[:length], headers))
        data = rest[length:]
    return responses


def test_a_body_longer_than_its_content_length_gets_the_envelope(port: int) -> None:
    body = b'{"a": 1}'
    raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
           + str(len(body)).encode() + b"\r\n\r\n" + body + b"trailing bytes that are no request\r\n\r\n")
    responses = exchange(port, raw)
    status, payload, headers = responses[-1]
    assert status == 400 and headers["content-type"] == "application/json" and headers["connection"] == "close"
    error = json.loads(payload)["error"]
    assert error["type"] == "invalid_request_error" and error["message"].startswith("malformed HTTP request")
    assert all(s in (200, 400) for s, _, _ in responses)


def test_a_malformed_request_line_gets_the_envelope(port: int) -> None:
    [(status, payload, _)] = exchange(port, b"NOT HTTP AT ALL\r\n\r\n")
    assert status == 400 and json.loads(payload)["error"]["code"] == "malformed_request"


def test_a_well_formed_request_is_served_as_before(port: int) -> None:
    body = b'{"a": 1}'
    raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
           b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert [(s, json.loads(p)) for s, p, _ in exchange(port, raw)] == [(200, {"a": 1})]
