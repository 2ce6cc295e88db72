"""Pure balancing decisions: which candidate to try first, which next, and whether a next try is allowed.

Nothing here does I/O or awaits: the proxy asks these functions for an *order* of candidates and for a
yes/no after each failure, then does the sending itself. Keeping the decisions pure is what lets the
tables in ``tests/test_balancing.py`` pin every rule of CONTRACT section 3 without a network.

* :class:`RoundRobin` and :class:`SmoothWeighted` hold the only state (a position, current weights),
  one instance per pool, so two pools never disturb each other's rotation.
* :func:`may_fall_back` is the one place the fallback rules live (status, timeout, idempotency, body
  replay), so failover, round-robin and weighted pools cannot drift apart.
* :func:`parse_priority` turns seed 003's digit strings into provider keys and says what it skipped.
* :func:`viewer_country`, :func:`continent_of` and :func:`geo_choice` pick a target by the viewer's
  country (seed 002).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, TypeVar

T = TypeVar("T")

Failure = Literal["connect", "timeout", "status", "protocol"]

# RFC 9110 section 9.2.2. Method names are case-sensitive (section 9.1): "get" is not GET, so it is not
# treated as idempotent. Any method not listed here (POST, PATCH, CONNECT, extension methods) is
# treated as non-idempotent: a repeat could do the work twice.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class RoundRobin:
    """A rotating start position for one pool.

    Seed 004 advanced its index only when a request failed over; here every call advances it by one,
    success or not, so load spreads evenly even when every target is healthy. On failure the caller
    walks the rest of the returned order; that walk does not move the position further.

    `start` is the first position. Each Lambda execution environment gets its own instance, so a caller
    that wants cold starts not to all hit target 0 passes a random start (randomness stays injected).
    """

    def __init__(self, start: int = 0) -> None:
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self._position = start

    def order(self, count: int) -> list[int]:
        """Indexes of `count` candidates in try order, starting at the current position.

        With ``count == 0`` there is nothing to pick and the position does not move. When the pool size
        changes between calls (a config reload) the position is taken modulo the new size.
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if count == 0:
            return []
        first = self._position % count
        self._position = (first + 1) % count
        return [(first + offset) % count for offset in range(count)]


class SmoothWeighted:
    """nginx's smooth weighted round-robin (``ngx_http_upstream_get_peer``), without its failure tracking.

    Each pick adds every peer's weight to its current weight, picks the largest current weight (the
    lowest index on a tie, as nginx's strict ``>`` does) and subtracts the total from the winner. Over
    any run of ``sum(weights)`` picks each peer is picked exactly ``weight`` times, and the picks are
    interleaved (5:1:1 gives ``a a b a c a a``) instead of bursts of the heavy peer.

    Weight 0 drains a peer: it is never picked and never offered as a fallback. Health and circuit
    breaking are the caller's concern (it skips candidates); this class only decides the order.
    """

    def __init__(self, weights: Sequence[int]) -> None:
        for index, weight in enumerate(weights):
            if weight < 0:
                raise ValueError(f"weight {index} is negative ({weight})")
        self._weights = tuple(weights)
        self._current = [0] * len(weights)
        self._total = sum(weights)
        # Fallback order after the pick: heaviest first, ties by index. Fixed, so computed once.
        self._by_weight = sorted(
            (index for index, weight in enumerate(weights) if weight > 0),
            key=lambda index: (-self._weights[index], index),
        )

    @property
    def weights(self) -> tuple[int, ...]:
        return self._weights

    def order(self) -> list[int]:
        """The SWRR pick first, then every other positive-weight candidate by descending weight.

        With every weight 0 the pool is fully drained and the answer is ``[]`` (no state changes).
        """
        if self._total == 0:
            return []
        best = -1
        for index, weight in enumerate(self._weights):
            if weight == 0:
                continue
            self._current[index] += weight
            if best < 0 or self._current[index] > self._current[best]:
                best = index
        self._current[best] -= self._total
        return [best, *(index for index in self._by_weight if index != best)]


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


def parse_priority(priority: str, providers: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """Seed 003's priority digits -> the provider keys to try, in order, and warnings for what was skipped.

    ``"213"`` with providers 1, 2 and 3 gives ``["2", "1", "3"]``. Skipped, each with a warning naming
    the character: a digit with no provider, a provider whose URL is empty or blank (an unset
    ``${VAR}``), and any character that is not an ASCII digit. A repeated digit is tried once, at its
    first position: trying the same provider twice in one request only doubles the wait. Each problem
    is warned about once, however often the character repeats.
    """
    keys: list[str] = []
    warnings: list[str] = []
    seen: set[str] = set()
    for char in priority:
        if char in seen:
            continue
        seen.add(char)
        if char not in "0123456789":
            warnings.append(f"priority character {char!r} is not a digit; skipped")
        elif char not in providers:
            warnings.append(f"priority digit {char!r} names no provider; skipped")
        elif not providers[char].strip():
            warnings.append(f"priority digit {char!r}: provider URL is empty; skipped")
        else:
            keys.append(char)
    return keys, warnings


# ISO 3166-1 alpha-2 -> continent, in the codes and the conventions of the GeoIP data CloudFront and
# Cloudflare use: transcontinental countries are placed as MaxMind places them (RU, CY in Europe;
# TR, GE, AM, AZ, KZ in Asia; EG in Africa; PA, TT in North America; UM in Oceania). XK (Kosovo) is a
# user-assigned code, but both CDNs send it. Written grouped by continent because that is how it is
# reviewed; the test checks every one of the 249 ISO codes plus XK appears exactly once.
_COUNTRIES_BY_CONTINENT = {
    "AF": (
        "AO BF BI BJ BW CD CF CG CI CM CV DJ DZ EG EH ER ET GA GH GM GN GQ GW KE KM LR LS LY MA MG ML MR MU"
        " MW MZ NA NE NG RE RW SC SD SH SL SN SO SS ST SZ TD TG TN TZ UG YT ZA ZM ZW"
    ),
    "AN": "AQ BV GS HM TF",
    "AS": (
        "AE AF AM AZ BD BH BN BT CC CN CX GE HK ID IL IN IO IQ IR JO JP KG KH KP KR KW KZ LA LB LK MM MN MO"
        " MV MY NP OM PH PK PS QA SA SG SY TH TJ TL TM TR TW UZ VN YE"
    ),
    "EU": (
        "AD AL AT AX BA BE BG BY CH CY CZ DE DK EE ES FI FO FR GB GG GI GR HR HU IE IM IS IT JE LI LT LU LV"
        " MC MD ME MK MT NL NO PL PT RO RS RU SE SI SJ SK SM UA VA XK"
    ),
    "NA": (
        "AG AI AW BB BL BM BQ BS BZ CA CR CU CW DM DO GD GL GP GT HN HT JM KN KY LC MF MQ MS MX NI PA PM PR"
        " SV SX TC TT US VC VG VI"
    ),
    "OC": "AS AU CK FJ FM GU KI MH MP NC NF NR NU NZ PF PG PN PW SB TK TO TV UM VU WF WS",
    "SA": "AR BO BR CL CO EC FK GF GY PE PY SR UY VE",
}

CONTINENT_OF_COUNTRY: Mapping[str, str] = {
    country: continent
    for continent, countries in _COUNTRIES_BY_CONTINENT.items()
    for country in countries.split()
}

CONTINENTS = frozenset(_COUNTRIES_BY_CONTINENT)

# Keys that are both a continent code and an ISO country code. In a geo mapping they are read as the
# country first (see geo_choice), which is rarely what was meant by "NA" or "AS"; a config validator
# should warn about them.
AMBIGUOUS_GEO_KEYS = frozenset(CONTINENTS & CONTINENT_OF_COUNTRY.keys())

# Sent by the CDNs when the country is not known: XX (CloudFront, Cloudflare), T1 (Cloudflare: Tor).
_UNKNOWN_COUNTRIES = frozenset({"XX", "T1"})
_COUNTRY_HEADERS = ("cloudfront-viewer-country", "cf-ipcountry")


def continent_of(country: str) -> str | None:
    """The continent code (AF AN AS EU NA OC SA) of an ISO alpha-2 country code, any case; else None."""
    return CONTINENT_OF_COUNTRY.get(country.strip().upper())


def geo_choice(mapping: Mapping[str, T], country: str | None, default: T) -> T:
    """The value for the viewer's country, else for its continent, else `default`.

    Keys are matched case-insensitively. The country is looked up first, so a key that is both a
    country and a continent code (:data:`AMBIGUOUS_GEO_KEYS`: ``NA`` is Namibia and North America)
    catches that country as well as the continent.
    """
    if not country:
        return default
    by_key = {key.strip().upper(): value for key, value in mapping.items()}
    code = country.strip().upper()
    if code in by_key:
        return by_key[code]
    continent = CONTINENT_OF_COUNTRY.get(code)
    if continent is not None and continent in by_key:
        return by_key[continent]
    return default


def viewer_country(headers: Mapping[str, str]) -> str | None:
    """The viewer's country code (upper case) from the CDN's header, or None when it is not known.

    ``cloudfront-viewer-country`` is read first (the deployment's own CDN), then ``cf-ipcountry`` (for
    configs ported from Cloudflare). A header that says "unknown" (``XX``, ``T1``, empty, or not two
    ASCII letters) does not decide: the next header is read. `headers` has lower-case names.
    """
    for name in _COUNTRY_HEADERS:
        value = headers.get(name, "").strip().upper()
        if len(value) == 2 and value.isascii() and value.isalpha() and value not in _UNKNOWN_COUNTRIES:
            return value
    return None
