"""Whether a failed attempt may be followed by one at the next candidate (pure; no I/O).

`may_fall_back` is the one place the fallback rules live (status, timeout, idempotency, body
replay), so failover, priority, round-robin and weighted pools cannot drift apart; the tables in
``tests/test_balancing.py`` pin every rule of CONTRACT section 3.
"""

from __future__ import annotations

from typing import Literal

Failure = Literal["connect", "timeout", "status", "protocol"]

# RFC 9110 section 9.2.2. Method names are case-sensitive (section 9.1): "get" is not GET, so it is not
# treated as idempotent. Any method not listed here (POST, PATCH, CONNECT, extension methods) is
# treated as non-idempotent: a repeat could do the work twice.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


def is_failure_status(status: int) -> bool:
    """404 and 5xx mean "this backend cannot answer": try the next one (seed 003).

    Every other status is the backend's answer and goes back to the client as it is; 401 and 403 in
    particular must not fall back, or a request refused by one provider could be accepted by another.
    """
    return status == 404 or status >= 500


def may_fall_back(
    *,
    method: str,
    failure: Failure,
    status: int | None,
    retry_non_idempotent: bool,
    body_replayable: bool,
) -> bool:
    """Whether a failed attempt may be followed by an attempt at the next candidate.

    Whether a next candidate exists is the caller's concern. The rules, in order:

    * ``connect``: the request never reached the backend, so nothing can have happened twice; always.
    * ``status``: only a failure status (:func:`is_failure_status`) is a failure at all.
    * ``status``, ``timeout`` and ``protocol`` (the exchange broke after the request was sent) mean the
      backend may have acted on the request. A non-idempotent method (anything outside
      :data:`IDEMPOTENT_METHODS`) is repeated only when the route sets `retry_non_idempotent`.
    * A body that was streamed and not kept (`body_replayable` false) cannot be sent again intact, so
      there is no second attempt, whatever the method.
    """
    if failure == "connect":
        return True
    if failure == "status":
        if status is None:
            raise ValueError('failure "status" needs the status code')
        if not is_failure_status(status):
            return False
    if not body_replayable:
        return False
    return method in IDEMPOTENT_METHODS or retry_non_idempotent
