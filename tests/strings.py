"""Hostile values for input fuzzing (tests/test_input_fuzz.py): one named representative of each
class of value a client can send, per GraphQL input type, and hypothesis strategies that mix
them with arbitrary ones.

Every value here is something JSON can carry: a lone surrogate travels as its ``\\ud800``
escape, a NUL as ``\\u0000``; the body stays under the server's 100,000-byte limit.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

HUGE_CHARS = 90_000  # with the rest of a request, just under the 100,000-byte body limit


def b64(raw: bytes | str) -> str:
    """URL-safe base64 without padding, the shape of the server's global IDs."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# Free text: names, bodies, emails, numbers, tokens, search terms.
# In this order: the values most likely accepted come last, so that a sweep spends a one-time
# baseline token (a reset link, an invitation) as late as it can.
TEXT: dict[str, Any] = {
    "nul": "Fuzz\x00text",
    "lone-surrogate": "Fuzz\ud800",
    "low-surrogate-first": "\udfffFuzz\ud800",
    "control-chars": "a\x01\x02\x07\x08\x0b\x0c\x0e\x1b[31m\x1f\x7f\x80\x85\x9fz",
    "empty": "",
    "blank": " \t\n\r\u00a0\u2028\u3000",
    "long-number": "9" * 400,
    "huge": "x" * HUGE_CHARS,
    "bidi-zero-width": "\u202egnp.exe\u202c\u200b\u200d\ufeff\u2066x\u2069\u200f",
    "emoji-non-bmp": "\U0001f469\U0001f3fd\u200d\U0001f4bb \U0001f3f3\ufe0f\u200d\U0001f308 \U0010ffff\ufffe",
    "sql-like-wildcards": "%_\\' OR 1=1; -- \"",
}

# Global IDs (``base64("Type:pk")``): arbitrary strings and base64 of arbitrary things. The
# ones that need the expected type name are built by ``id_values``.
ID_JUNK: dict[str, Any] = {
    "nul": b64("Account:99999999") + "\x00",
    "lone-surrogate": "\ud800",
    "empty": "",
    "long-number": "9" * 400,
    "json-int": 12345,
    "json-huge-int": 10**30,
    "not-base64": "!!!***",
    "base64-junk-bytes": b64(bytes(range(256))),
    "base64-invalid-utf8": b64(b"\xff\xfe:1"),
    "base64-no-colon": b64("Account"),
    "base64-unknown-type": b64("NoSuchType:1"),
    "base64-surrogate": b64("Account:\ud800"),
    "base64-nul": b64("Account\x00:1"),
    "huge": "A" * HUGE_CHARS,
}


def id_values(type_name: str) -> dict[str, Any]:
    """The junk above, and well-formed IDs of ``type_name`` whose key no database has, or
    cannot hold (over 32 and 64 bits), or that only look like digits. None names a row that
    exists: staff may act on any account, and the demo rows must stay as seeded."""
    return {
        **ID_JUNK,
        "pk-zero": b64(f"{type_name}:0"),
        "pk-negative": b64(f"{type_name}:-1"),
        "pk-int32-overflow": b64(f"{type_name}:2147483648"),
        "pk-18-digits": b64(f"{type_name}:999999999999999999"),
        "pk-int64-overflow": b64(f"{type_name}:99999999999999999999"),
        "pk-unicode-digits": b64(f"{type_name}:" + "\u0669" * 8),  # Arabic-Indic 99999999
        "pk-superscript": b64(f"{type_name}:\u00b2"),
        "other-type": b64(("Ticket" if type_name != "Ticket" else "Account") + ":99999999"),
    }


INT: dict[str, Any] = {
    "zero": 0,
    "negative": -1,
    "int32-max": 2**31 - 1,
    "int32-min": -(2**31),
    "int32-overflow": 2**31,
    "int32-underflow": -(2**31) - 1,
    "huge": 10**30,
    "float": 1.5,
    "numeric-string": "7",
    "long-number-string": "9" * 400,
    "boolean": True,
}

DATETIME: dict[str, Any] = {
    "naive": "2026-10-01T00:00:00",
    "far-past": "0001-01-01T00:00:00+01:00",
    "far-past-utc": "0001-01-01T00:00:00+00:00",
    "far-future": "9999-12-31T23:59:59-01:00",
    "date-only": "2026-10-01",
    "offset-23:59": "2026-10-01T00:00:00+23:59",
    "malformed": "2026-13-45T25:61:61Z",
    "words": "yesterday",
    "empty": "",
    "nul": "2026-10-01T00:00:00\x00",
    "epoch-number": 1_700_000_000,
    "many-fraction-digits": "2026-10-01T00:00:00.123456789123+00:00",
}

BOOLEAN: dict[str, Any] = {"string": "true", "number": 1, "empty-string": "", "list": [True]}


# Named values the sweep leaves out by default (near-duplicates of others, to keep CI short);
# in with ``LINKGATE_FUZZ_EXAMPLES`` set.
EXTENDED_ONLY = {"low-surrogate-first", "blank", "json-int", "base64-junk-bytes", "base64-no-colon",
                 "base64-nul", "base64-surrogate", "pk-zero", "number", "list", "nested",
                 "literal control-chars", "literal emoji-non-bmp", "missing-required",
                 "base64-unknown-type", "pk-negative"}


def enum_values(valid: list[str]) -> dict[str, Any]:
    return {"unknown": "NOT_A_VALUE", "lower-case": valid[0].lower(), "empty": "", "number": 7,
            "nul": valid[0] + "\x00"}


def list_values(item: Any) -> dict[str, Any]:
    return {"empty": [], "thousand-items": [item] * 1000, "null-item": [None],
            "bare-item": item, "nested": [[item]]}


def object_values(baseline: dict[str, Any]) -> dict[str, Any]:
    return {"empty-object": {}, "string": "not an object", "number": 7, "list": [baseline],
            "unknown-field": {**baseline, "noSuchField": 1}}


# --- hypothesis strategies ---------------------------------------------------------------

# Every code point, lone surrogates included (``codec=None`` and no excluded category).
ANY_CHAR = st.characters(codec=None, categories=None, exclude_categories=())
NASTY_CHARS = st.sampled_from(
    ["\x00", "\ud800", "\udfff", "\x1b", "\x7f", "\x85", "\u202e", "\u200b", "\ufeff", "\ufffe",
     "\U0010ffff", "\U0001f4a9", "%", "_", "\\", "'", '"', "\n", "\r", "\t", " ", "\u0301"]
)


def hostile_text(max_size: int = 60) -> st.SearchStrategy[str]:
    """Arbitrary text (lone surrogates and NULs included), the named classes above, and very
    long or numeric strings."""
    return st.one_of(
        st.sampled_from(sorted(TEXT.values(), key=len)),
        st.text(st.one_of(NASTY_CHARS, ANY_CHAR), max_size=max_size),
        st.builds(lambda text, times: text * times, st.text(ANY_CHAR, min_size=1, max_size=4),
                  st.integers(min_value=1_000, max_value=60_000)),
        st.integers(min_value=-(10**400), max_value=10**400).map(str),
    )


def hostile_id(type_name: str) -> st.SearchStrategy[Any]:
    """Arbitrary strings and base64 of arbitrary things, some shaped like ``Type:pk``."""
    return st.one_of(
        st.sampled_from(sorted(id_values(type_name).items())).map(lambda item: item[1]),
        hostile_text(),
        st.binary(max_size=40).map(b64),
        st.text(ANY_CHAR, max_size=20).map(lambda s: b64(f"{type_name}:{s}")),
        st.integers(min_value=-(10**30), max_value=10**30).map(lambda n: b64(f"{type_name}:{n}")),
        st.integers(min_value=-(10**30), max_value=10**30),
    )


def hostile_int() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(sorted(INT.items(), key=lambda item: item[0])).map(lambda item: item[1]),
        st.integers(),
        st.integers(min_value=-(2**31), max_value=2**31 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.integers().map(str),
    )


def hostile_datetime() -> st.SearchStrategy[Any]:
    offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
        lambda minutes: timezone(timedelta(minutes=minutes))
    )
    return st.one_of(
        st.sampled_from(sorted(DATETIME.items(), key=lambda item: item[0])).map(lambda item: item[1]),
        st.datetimes(timezones=st.one_of(st.none(), offsets)).map(datetime.isoformat),
        st.dates().map(lambda day: day.isoformat()),
        hostile_text(20),
    )


JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
    st.text(ANY_CHAR, max_size=20),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(ANY_CHAR, max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
