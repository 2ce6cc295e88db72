"""The router's own answers: JSON errors (CONTRACT section 6), written whole to an `AnswerWriter`.

`send_refusal` is the one error path of the data plane: every `Refusal` (a guard's, routing's, the
attempt loop's) is rendered here. `raw_error_response` renders the same body as whole HTTP/1.1
bytes, for the server's refusals made before a request reaches the application.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from ..exceptions import Refusal
from ..types import Header
from .channel import AnswerWriter

REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    413: "Payload Too Large",
    414: "URI Too Long",
    422: "Invalid Config",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    499: "Client Closed Request",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Backend Unavailable",
    504: "Gateway Timeout",
    508: "Loop Detected",
}
_JSON = (b"content-type", b"application/json")


def error_body(status: int, message: str, request_id: str, **extra: Any) -> bytes:
    body: dict[str, Any] = {
        "error": REASONS.get(status, "Error"),
        "message": message,
        "request_id": request_id,
    }
    body.update({key: value for key, value in extra.items() if value is not None})
    return json.dumps(body, separators=(",", ":")).encode()


async def send_bytes(answer: AnswerWriter, status: int, body: bytes, headers: Iterable[Header]) -> None:
    await answer.whole(status, [*headers, (b"content-length", b"%d" % len(body))], body)


async def send_refusal(
    answer: AnswerWriter, refusal: Refusal, *, request_id: str, cors: Iterable[Header], debug: bool = False
) -> None:
    """Answer `refusal`: its JSON error body (none for a 204), the request id, CORS, its own headers;
    its `detail` only when `debug` (DEBUG_ERRORS=1)."""
    request_id_header = (b"x-request-id", request_id.encode())
    if refusal.status == 204:
        await send_bytes(answer, 204, b"", [*refusal.headers, request_id_header])
        return
    detail = refusal.detail if debug else None
    body = error_body(
        refusal.status, refusal.message, request_id, error=refusal.error, detail=detail, **refusal.extra
    )
    await send_bytes(answer, refusal.status, body, [_JSON, request_id_header, *cors, *refusal.headers])


def raw_error_response(
    status: int, message: str, *, request_id: str, headers: Iterable[Header] = ()
) -> bytes:
    """A whole HTTP/1.1 error answer with `Connection: close`, for refusals made by the server itself
    before (or instead of) the application: the same JSON body as `send_refusal`."""
    body = error_body(status, message, request_id)
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else REASONS.get(status, "")
    lines = [
        f"HTTP/1.1 {status} {phrase}".encode(),
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
        b"x-request-id: " + request_id.encode(),
        *(name + b": " + value for name, value in headers),
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
