"""The viewer's country and continent, for routes with `geo` rules (seed 002; pure, no I/O).

A route's `geo` keeps countries and continents in separate tables (`routing.candidates` looks the
country up first, then its continent): "AF" is Afghanistan as a country and Africa as a continent,
so one merged table would send Afghans to Africa's targets.
"""

from __future__ import annotations

from collections.abc import Mapping

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

# Sent by the CDNs when the country is not known: XX (CloudFront, Cloudflare), T1 (Cloudflare: Tor).
_UNKNOWN_COUNTRIES = frozenset({"XX", "T1"})
_COUNTRY_HEADERS = ("cloudfront-viewer-country", "cf-ipcountry")


def continent_of(country: str) -> str | None:
    """The continent code (AF AN AS EU NA OC SA) of an ISO alpha-2 country code, any case; else None."""
    return CONTINENT_OF_COUNTRY.get(country.strip().upper())


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
