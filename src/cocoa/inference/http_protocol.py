"""uvicorn's HTTP protocol, answering a request it cannot parse in the API's JSON error envelope.

A request that never reaches the app (a malformed request line or header, or bytes past a
body's ``Content-Length``, which the parser reads as the start of a next request) is answered
by the protocol itself, in uvicorn with a plain-text 400. :class:`EnvelopeHTTPProtocol` sends the
same 400, and closes the connection the same way, with ``{"error": {"message", "type", "code"}}``.
"""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.auto import AutoHTTPProtocol


def malformed_response(message: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The raw HTTP/1.1 400 response, JSON envelope included, for a request that could not be parsed."""
    body = orjson.dumps({"error": {"message": f"malformed HTTP request: {message}",
                                   "type": "invalid_request_error", "code": "malformed_request"}})
    head = [b"HTTP/1.1 400 Bad Request"]
    head += [name + b": " + value for name, value in default_headers]
    head += [b"content-type: application/json", b"content-length: " + str(len(body)).encode(), b"connection: close"]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class EnvelopeHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """The protocol uvicorn would pick (httptools when installed, else h11) with an enveloped 400."""

    def send_400_response(self, msg: str) -> None:
        self.transport.write(malformed_response(msg, self.server_state.default_headers))
        self.transport.close()
