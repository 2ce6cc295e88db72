"""Reading what RFC 9111 caching depends on from header values: Cache-Control, dates, Age, Vary.

Pure parsing, bytes in: a backend's answer stays bytes end to end, and a request's headers are
turned into bytes by the caller. Everything here is lenient the way RFC 9111 asks a cache to be:
an unparseable date is "in the past", a bad delta-seconds makes the answer stale, a directive
given twice counts once (its first occurrence, RFC 9111 4.2.1).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime

# RFC 9111 1.2.2: a delta-seconds too large to represent is 2^31.
MAX_DELTA = 2147483648

# One list member: token [ "=" ( token / quoted-string ) ], separated by commas (RFC 9110 5.6.1).
_DIRECTIVE = re.compile(rb'\s*([^\s=,]+)(?:\s*=\s*("(?:[^"\\]|\\.)*"|[^,]*))?\s*(?:,|$)')
_DIGITS = re.compile(rb"[0-9]+")

Directives = dict[str, bytes | None]


def cache_control(values: Iterable[bytes]) -> Directives:
    """Every Cache-Control field line's directives: lower-case name -> value (unquoted) or None.

    A directive given more than once keeps its first value.
    """
    found: Directives = {}
    for value in values:
        for match in _DIRECTIVE.finditer(value):
            name = match.group(1).lower().decode("latin-1")
            if not name:
                continue
            argument = match.group(2)
            if argument is not None:
                argument = argument.strip()
                if argument.startswith(b'"') and argument.endswith(b'"') and len(argument) >= 2:
                    argument = re.sub(rb"\\(.)", rb"\1", argument[1:-1])
            found.setdefault(name, argument)
    return found


def delta_seconds(directives: Directives, name: str) -> int | None:
    """The delta-seconds of directive `name`: None when absent; -1 when present but invalid
    (RFC 9111 4.2.1: the answer is then treated as stale)."""
    if name not in directives:
        return None
    value = directives[name]
    if value is None or not _DIGITS.fullmatch(value):
        return -1
    return min(int(value), MAX_DELTA)


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH = "(" + "|".join(_MONTHS) + ")"
_TIME = r"(\d\d):(\d\d):(\d\d)"
# RFC 9110 5.6.7's three forms, exactly (any letter case, as caches commonly accept): a date in
# another zone, without its comma, with doubled spaces or a one-digit hour is not an HTTP-date.
_IMF_FIXDATE = re.compile(
    rb"(?:mon|tue|wed|thu|fri|sat|sun), (\d\d) "
    + _MONTH.encode()
    + rb" (\d{4}) "
    + _TIME.encode()
    + rb" gmt",
    re.I,
)
_RFC850 = re.compile(
    rb"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday), (\d\d)-"
    + _MONTH.encode()
    + rb"-(\d\d) "
    + _TIME.encode()
    + rb" gmt",
    re.I,
)
_ASCTIME = re.compile(
    rb"(?:mon|tue|wed|thu|fri|sat|sun) " + _MONTH.encode() + rb" ([ \d]\d) " + _TIME.encode() + rb" (\d{4})",
    re.I,
)


def http_date(value: bytes | None, *, now: float | None = None) -> float | None:
    """Epoch seconds of an HTTP-date (IMF-fixdate, RFC 850 or asctime); None when it is not one.

    Written by hand: `email.utils` accepts what RFC 9110 does not (other zones, no comma, one-digit
    hours), and a cache must treat those Expires values as invalid, i.e. already expired."""
    if not value:
        return None
    value = value.strip()
    if match := _IMF_FIXDATE.fullmatch(value):
        day, month, year, hour, minute, second = match.groups()
    elif match := _RFC850.fullmatch(value):
        day, month, short_year, hour, minute, second = match.groups()
        year = str(_full_year(int(short_year), now)).encode()
    elif match := _ASCTIME.fullmatch(value):
        month, day, hour, minute, second, year = match.groups()
    else:
        return None
    try:
        moment = datetime(
            int(year),
            _MONTHS.index(month.decode().lower()) + 1,
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=UTC,
        )
    except ValueError:  # 31 Feb, hour 25
        return None
    return moment.timestamp()


def _full_year(short: int, now: float | None) -> int:
    """RFC 9110 5.6.7: a two-digit year more than 50 years in the future is in the past century."""
    this_year = datetime.fromtimestamp(time.time() if now is None else now, UTC).year
    year = this_year // 100 * 100 + short
    return year - 100 if year > this_year + 50 else year


def age_seconds(value: bytes | None) -> int:
    """An Age value (RFC 9111 5.1): its delta-seconds (of the first member of a list); 0 when
    absent or invalid."""
    if value is None:
        return 0
    first = value.split(b",", 1)[0].strip()
    if not _DIGITS.fullmatch(first):
        return 0
    return min(int(first), MAX_DELTA)


def field_names(values: Iterable[bytes]) -> tuple[str, ...]:
    """The lower-case field names of list-valued header lines (Vary, Connection), in order, once each."""
    names: list[str] = []
    for value in values:
        for part in value.split(b","):
            name = part.strip().lower().decode("latin-1")
            if name and name not in names:
                names.append(name)
    return tuple(names)


def entity_tags(value: str) -> list[str]:
    """The entity-tags of an If-None-Match value, as sent (`W/"x"` stays weak); ["*"] for `*`."""
    value = value.strip()
    if value == "*":
        return ["*"]
    return re.findall(r'(?:W/)?"[^"]*"', value)


def weak_match(tag: str, candidates: list[str]) -> bool:
    """RFC 9110 8.8.3.2 weak comparison, the one If-None-Match uses."""
    if "*" in candidates:
        return True
    opaque = tag.removeprefix("W/")
    return any(candidate.removeprefix("W/") == opaque for candidate in candidates)


# RFC 8941 dictionary members: key [ "=" bare-item ] with parameters; the subset CDN-Cache-Control
# (RFC 9213) uses. Anything else makes the whole field invalid, and then it is ignored.
_SF_MEMBER = re.compile(
    rb'([a-z*][a-z0-9_\-.*]*)(?:=(-?\d{1,15}|"(?:[^"\\]|\\["\\])*"|[A-Za-z*][!#$%&\'*+\-.^_`|~:/0-9A-Za-z]*|\?[01]))?'
    rb"(?:;[a-z*][a-z0-9_\-.*]*(?:=[^,;]*)?)*"
)
_SF_INTEGER_DIRECTIVES = frozenset({"max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"})


def cdn_cache_control(values: list[bytes]) -> Directives | None:
    """CDN-Cache-Control (RFC 9213) as directives, or None when absent or not a valid Structured
    Field dictionary (then the cache uses Cache-Control, as the RFC asks). `max-age` and the other
    delta directives must be integers."""
    if not values:
        return None
    found: Directives = {}
    for member in b",".join(values).split(b","):
        member = member.strip(b" \t")
        match = _SF_MEMBER.fullmatch(member)
        if match is None:
            return None
        name = match.group(1).decode("latin-1")
        value = match.group(2)
        if name in _SF_INTEGER_DIRECTIVES and (value is None or not _DIGITS.fullmatch(value.lstrip(b"-"))):
            return None
        if value is not None and value.startswith(b"-"):
            return None
        found.setdefault(name, value if value not in (None, b"?1") else None)
    return found
