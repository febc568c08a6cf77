"""Checks for the URLs and headers the package hands to an exporter, and URL redaction.

Every URL the package prints goes through :func:`redact_url` (no user-info, no query
string); header values are never printed at all. A URL or header that would fail inside
the HTTP client (where the error message would quote it in full, on every attempt) is
rejected here, before any exporter sees it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

_MAX_SHOWN = 200  # characters of a redacted URL shown at most
_WHITESPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f]")
# RFC 9110 token: the characters allowed in a header name.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Control characters other than horizontal tab; CR and LF among them.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def redact_url(url: object) -> str:
    """``url`` fit for a message: no user-info, no query string or fragment, one line.

    >>> redact_url("https://user:pw@collector:4318/v1/traces?token=abc")
    'https://***@collector:4318/v1/traces?***'
    """
    if not isinstance(url, str):
        return f"<{type(url).__name__}>"
    text, query = url, ""
    cut = min((i for i in (text.find("?"), text.find("#")) if i >= 0), default=-1)
    if cut >= 0:
        text, query = text[:cut], "?***"
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    if "@" in rest:  # the last "@": a password may hold "/" or "@" unencoded
        rest = "***@" + rest.rpartition("@")[2]
    shown = f"{scheme}{sep}{rest}{query}"
    shown = _WHITESPACE_OR_CONTROL.sub("?", shown)
    return shown if len(shown) <= _MAX_SHOWN else shown[:_MAX_SHOWN] + "..."


def url_problem(url: str) -> str | None:
    """Why ``url`` is not a usable http(s) endpoint, in words that do not quote it; or None."""
    if _WHITESPACE_OR_CONTROL.search(url):
        return "contains whitespace or control characters"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "is not a valid URL"
    if parts.scheme.lower() not in ("http", "https"):
        return "must start with http:// or https://"
    if not parts.hostname:
        return "has no host"
    try:
        port = parts.port
    except ValueError:
        return "has an invalid port"
    if port == 0:
        return "has an invalid port"
    try:
        parse_url(url)  # what requests itself uses; its errors quote the URL
    except LocationParseError:
        return "is not a valid URL"
    return None


def header_problem(name: object, value: object) -> str | None:
    """Why a header cannot be sent, in words that never quote its value; or None."""
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        return "a header name is not a valid HTTP token"
    if not isinstance(value, str):
        return f"header {name} must have a string value, not {type(value).__name__}"
    if _CONTROL.search(value):
        return f"the value of header {name} contains a control character (such as CR or LF)"
    if value[:1].isspace():
        return f"the value of header {name} starts with whitespace"
    if any(ord(char) > 0xFF for char in value):
        return f"the value of header {name} has characters HTTP cannot send (beyond Latin-1)"
    return None


def check_headers(headers: Mapping[object, object]) -> tuple[dict[str, str], list[str]]:
    """The headers that can be sent, and why each other one cannot (never its value)."""
    good: dict[str, str] = {}
    problems: list[str] = []
    for name, value in headers.items():
        problem = header_problem(name, value)
        if problem is None:
            good[str(name)] = str(value)
        else:
            problems.append(problem)
    return good, problems


# The OpenTelemetry specification's format of OTEL_EXPORTER_OTLP_HEADERS, read liberally as
# the Python SDK does (1.33 through 1.45): key=value pairs separated by commas, values
# URL-encoded, or else taken as written when they are printable ASCII.
_OWS = r"[ \t]*"
_KEY = r"[\x21\x23-\x27\x2a\x2b\x2d\x2e\x30-\x39\x41-\x5a\x5e-\x7a\x7c\x7e]+"
_STRICT_PAIR = re.compile(
    rf"{_OWS}{_KEY}{_OWS}={_OWS}[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*{_OWS}"
)
_LIBERAL_PAIR = re.compile(
    rf"{_OWS}{_KEY}{_OWS}={_OWS}[\x20\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*{_OWS}"
)
_DELIMITER = re.compile(r"[ \t]*,[ \t]*")


def parse_headers_variable(raw: str) -> tuple[dict[str, str], int]:
    """The headers of an ``OTEL_EXPORTER_OTLP_*HEADERS`` value, and how many entries were bad.

    Entries are read as the SDK reads them; one it would keep but the HTTP client would
    refuse (a ``%0D%0A`` that decodes to CR LF) counts as bad too, and is left out.
    """
    headers: dict[str, str] = {}
    bad = 0
    for entry in _DELIMITER.split(raw):
        if not entry.strip():
            continue
        entry = entry.strip()
        if _STRICT_PAIR.fullmatch(entry):
            name, value = entry.split("=", 1)
            name, value = unquote(name).strip().lower(), unquote(value).strip()
        elif _LIBERAL_PAIR.fullmatch(entry):
            name, value = entry.split("=", 1)
            name, value = name.strip().lower(), value.strip()
        else:
            bad += 1
            continue
        if header_problem(name, value) is not None:
            bad += 1
            continue
        headers[name] = value
    return headers, bad
