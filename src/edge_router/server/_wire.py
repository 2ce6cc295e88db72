"""Answer heads and body framing as bytes on the wire, built with as little Python as possible.

A head is the precomputed status line plus the relayed headers joined in C
(`b"\\r\\n".join(map(b": ".join, headers))`); what the engine needs to know of them (a
Content-Length, a Connection header) is found by substring search in a lower-case copy of that
one bytes object rather than by a loop over the pairs. This relies on no value holding CR or LF
(relayed answers are checked by `http.headers.valid_response_head`, the router's own headers are
its own).

No Date and no Server header is ever added: a backend's pass through untouched.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..types import Header

# How an answer's body is framed (`Framing.mode`).
NO_BODY = 0  # HEAD, 204, 304: the head only, whatever the headers say
IDENTITY = 1  # Content-Length
CHUNKED = 2  # HTTP/1.1 without Content-Length
CLOSE_DELIMITED = 3  # HTTP/1.0 without Content-Length: the body ends with the connection

_STATUS_LINES: dict[int, bytes] = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode("latin-1"))
    for status in HTTPStatus
}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"
_CRLF = b"\r\n"
_END = b"\r\n\r\n"
_CONTENT_LENGTH = b"\r\ncontent-length:"
_CONNECTION = b"\r\nconnection:"
_CLOSE_HEADER = b"\r\nconnection: close"
_KEEP_ALIVE_HEADER = b"\r\nconnection: keep-alive"
_CHUNKED_HEADER = b"\r\ntransfer-encoding: chunked"


def status_line(status: int) -> bytes:
    """`HTTP/1.1 <status> <reason>\\r\\n`; a status without a registered reason gets an empty one."""
    line = _STATUS_LINES.get(status)
    if line is None:
        line = _STATUS_LINES[status] = b"HTTP/1.1 %d \r\n" % status
    return line


def interim_head(status: int, headers: list[Header]) -> bytes:
    """A 1xx head (100, 103...) or the 101 of a splice: the headers exactly as given."""
    if not headers:
        return status_line(status) + _CRLF
    return status_line(status) + b"\r\n".join(map(b": ".join, headers)) + _END


def frame(
    status: int,
    headers: list[Header],
    head_request: bool,
    http11: bool,
    keep_alive: bool,
    whole_length: int = -1,
) -> tuple[bytes, int, int, bool]:
    """An answer's head and how its body goes on the wire: `(head, mode, length, keep_alive)`.

    * `mode`: NO_BODY for HEAD, 204 and 304; IDENTITY with a Content-Length (`length` bytes);
      CHUNKED for an HTTP/1.1 client without one; CLOSE_DELIMITED for HTTP/1.0 without one;
    * `keep_alive` (given: what the client asked for): whether the connection can carry another
      request after this answer: not when the client asked to close, an HTTP/1.0 client did not
      ask to keep it, the answer carries `Connection: close` itself, or the body ends with the
      connection;
    * `head`: the bytes to write, with `connection: close` added when the connection ends (and
      `connection: keep-alive` for an HTTP/1.0 client that keeps it), `transfer-encoding:
      chunked` when chunked, and a Content-Length of `whole_length` (a whole answer's body, -1
      for a streamed one) when the answer had none.
    """
    line = status_line(status)
    # the status line's CRLF starts the first header line (the searches below rely on it)
    text = line + b"\r\n".join(map(b": ".join, headers)) if headers else line[:-2]
    # Names as relayed may have any case (a backend's own): searched in a lower-case copy.
    lowered = text.lower()
    length = _content_length(lowered)
    if head_request or status == 204 or status == 304 or status < 200:
        mode = NO_BODY
    elif length >= 0:
        mode = IDENTITY
    elif whole_length >= 0:
        mode, length = IDENTITY, whole_length
        text += b"\r\ncontent-length: %d" % whole_length
    elif http11:
        mode = CHUNKED
        text += _CHUNKED_HEADER
    else:
        mode, keep_alive = CLOSE_DELIMITED, False
    if lowered.find(_CONNECTION) >= 0:  # (find is faster than `in` here)
        keep_alive = keep_alive and not _asks_to_close(lowered)
    elif not keep_alive:
        text += _CLOSE_HEADER
    elif not http11:
        text += _KEEP_ALIVE_HEADER
    return text + _END, mode, length, keep_alive


def _content_length(text: bytes) -> int:
    """The Content-Length in a joined head, or -1 (a value that is not a number counts as none)."""
    at = text.find(_CONTENT_LENGTH)
    if at < 0:
        return -1
    start = at + len(_CONTENT_LENGTH)
    end = text.find(_CRLF, start)
    try:
        return int(text[start:] if end < 0 else text[start:end])
    except ValueError:
        return -1


def _asks_to_close(text: bytes) -> bool:
    """Whether a Connection header in a joined head lists `close` (it is the answer's own)."""
    at = text.find(_CONNECTION)
    while at >= 0:
        start = at + len(_CONNECTION)
        end = text.find(_CRLF, start)
        value = text[start:] if end < 0 else text[start:end]
        if b"close" in value.lower():
            return True
        at = text.find(_CONNECTION, start)
    return False


def chunk(data: bytes, last: bool) -> bytes:
    """`data` as one chunk (none when empty), and the last chunk after it when `last`."""
    if not data:
        return LAST_CHUNK if last else b""
    if last:
        return b"%x\r\n%b\r\n0\r\n\r\n" % (len(data), data)
    return b"%x\r\n%b\r\n" % (len(data), data)
