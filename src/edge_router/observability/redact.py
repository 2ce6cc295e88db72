"""Redaction: what the router shows of a config or an error never includes a secret.

* `redact(document)`: values of keys named like key, secret, token, password (CONTRACT section 5)
  and credentials in URLs become `***` (`/_config/route`);
* `redact_text(text)`: the same in free text, such as an error message that quotes its source
  (a YAML parse error prints the offending line, a validation error the value it refused).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_SECRET_KEY = re.compile(r"key|secret|token|password|passwd|credential|authorization", re.IGNORECASE)
REDACTED = "***"
# In free text: `scheme://authority` anywhere; credentials are what runs to the authority's last @.
# Neither pattern backtracks over a long run: a huge value quoted in an error costs linear time.
_URL_AUTHORITY = re.compile(r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]*://)([^\s/?#'\"<>]*)")
# In free text: `password: x`, `token=x`, `"apiKey": "x"` (a YAML or JSON line quoted by a parse error).
# An unquoted value runs to the end of the line or to "; " (how ConfigInvalidError joins problems):
# YAML plain scalars may hold spaces, and showing too little beats leaking the rest of a password.
# A key starts only where a name starts and is taken whole (possessive `++`), so a long name made of
# secret words cannot make the engine retry every split of it.
_NAME = r"[\w.\[\]-]"  # a field path such as routes[0].apiKey
_SECRET_FRAGMENT = re.compile(
    rf"""(?P<key>(?<!{_NAME})(?={_NAME}*?(?:{_SECRET_KEY.pattern})){_NAME}++["']?[ \t]*+[:=][ \t]*+)"""
    r"""(?P<value>"[^"\n]*+"?|'[^'\n]*+'?|(?:(?!;\s)[^\n])*+)""",
    re.IGNORECASE,
)


def redact(value: Any, key: str = "") -> Any:
    """Hide values of secret-looking keys and credentials embedded in URLs."""
    if isinstance(value, dict):
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(item, key) for item in value]
    if isinstance(value, str):
        if key and _SECRET_KEY.search(key):
            return REDACTED
        return redact_url(value)
    if key and _SECRET_KEY.search(key) and value is not None:
        return REDACTED
    return value


def redact_text(text: str) -> str:
    """Hide URL credentials and the values of secret-looking `key: value` fragments in free text."""
    text = _URL_AUTHORITY.sub(_hide_url_credentials, text)
    return _SECRET_FRAGMENT.sub(_hide_fragment_value, text)


def _hide_url_credentials(match: re.Match[str]) -> str:
    scheme, authority = match.groups()
    if "@" not in authority:
        return match[0]
    return f"{scheme}{REDACTED}@{authority.rpartition('@')[2]}"


def _hide_fragment_value(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match['key']}{quote}{REDACTED}{quote}"


def redact_url(value: str) -> str:
    if "://" not in value:
        return value
    parts = urlsplit(value)
    if parts.password is None and parts.username is None:
        return value
    host = parts.hostname or ""
    netloc = f"{REDACTED}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
