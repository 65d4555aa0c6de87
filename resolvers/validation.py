"""Checks on user input that come back as ``userErrors``: one function per kind of value."""

from __future__ import annotations

import unicodedata
from datetime import datetime, timezone

import dateutil.parser

from email_validator import EmailNotValidError, validate_email

from resolvers.user_errors import UserError

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256
MAX_ACCOUNT_NAME = 50
MAX_PERSON_NAME = 100


def clean_email(value: str, field: str = "email") -> str | UserError:
    """The normalised (lower-cased) address, or why it is not one."""
    try:
        checked = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as error:
        return UserError(message=str(error), code="INVALID_EMAIL", field=[field])
    return checked.normalized.lower()


def is_text(value: str) -> bool:
    """False for a string with a lone surrogate (JSON can carry one; UTF-8 cannot)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_instant(value: str) -> datetime:
    """An ISO 8601 date-time *with* its offset, as UTC: the one rule for every instant a
    request carries (``DateTime`` inputs, pagination cursors). Without an offset the instant
    is unknown (whose midnight?), so it is refused rather than guessed; and it must exist in
    UTC (years 1 to 9999). ``ValueError`` says why not."""
    moment = dateutil.parser.isoparse(value)
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("It has no time zone: add one, as in 2026-10-01T00:00:00Z or +02:00.")
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("It is outside the years 1 to 9999 in UTC.") from None


def untypable_character(value: str) -> str | None:
    """What makes ``value`` unfit to store, or None: the one rule for every string a request
    carries. A NUL (PostgreSQL refuses it in text) or a lone surrogate (no UTF-8 for it):
    JSON and GraphQL escapes can carry both, no keyboard types either."""
    if "\x00" in value:
        return "a NUL character (U+0000)"
    if not is_text(value):
        return "a lone surrogate (U+D800 to U+DFFF)"
    return None


def normalize_email(email: str) -> str | None:
    """The stored form of an email typed to find a login (sign-in, reset, link proofs): no
    validation, since a wrong answer must look like any other; None if no stored email
    could be it (so no query runs with a NUL or a lone surrogate in it)."""
    email = email.strip().lower()
    if not email or len(email) > 254 or untypable_character(email):
        return None
    return email


def clean_email_list(
    values: list[str], *, field: str, maximum: int, too_many_code: str, noun: str
) -> list[str] | list[UserError]:
    """Up to ``maximum`` valid addresses, normalised, duplicates dropped; or every problem,
    each pointing at its item (``[field, index]``)."""
    if len(values) > maximum:
        return [UserError(message=f"At most {maximum} {noun}.", code=too_many_code, field=[field])]
    cleaned: list[str] = []
    errors: list[UserError] = []
    for index, value in enumerate(values):
        checked = clean_email(value, field=field)
        if isinstance(checked, UserError):
            errors.append(UserError(message=checked.message, code=checked.code,
                                    field=[field, str(index)]))
        elif checked not in cleaned:
            cleaned.append(checked)
    return errors or cleaned


def clean_password(value: str, field: str = "password") -> str | UserError:
    """8–256 characters of text: a NUL or a lone surrogate is no character a person types."""
    if untypable_character(value):
        return UserError(
            message="The password contains a character that cannot be typed.",
            code="PASSWORD_INVALID", field=[field],
        )
    if len(value) < MIN_PASSWORD_LENGTH:
        return UserError(
            message=f"Use at least {MIN_PASSWORD_LENGTH} characters.", code="PASSWORD_TOO_SHORT",
            field=[field],
        )
    if len(value) > MAX_PASSWORD_LENGTH:
        return UserError(
            message=f"Use at most {MAX_PASSWORD_LENGTH} characters.", code="PASSWORD_TOO_LONG",
            field=[field],
        )
    return value


# Invisible characters that reorder or hide what is shown: bidirectional overrides and
# isolates ("Shops\u202egnp.exe" reads as "Shopsexe.png"), and the byte-order mark. Other
# format characters (the zero-width joiners of emoji and of some scripts) stay allowed.
_DECEPTIVE = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")


def has_control_character(value: str) -> bool:
    """A control character left after white space is folded (an escape sequence, a bell),
    or one that changes how the rest reads: nothing a name or a one-line field should hold,
    and a trap for whoever shows or prints it."""
    return any(
        character in _DECEPTIVE or unicodedata.category(character) == "Cc" for character in value
    )


def clean_name(value: str, *, max_length: int, field: str = "name") -> str | UserError:
    """Inner runs of white space folded, 1 to ``max_length`` characters after trimming, no
    control character, NUL or lone surrogate (all arrive through JSON; none is a name)."""
    if untypable_character(value) or has_control_character(" ".join(value.split())):
        return UserError(
            message="The name contains a character that cannot be typed.", code="NAME_INVALID",
            field=[field],
        )
    name = " ".join(value.split())
    if not name:
        return UserError(message="The name cannot be empty.", code="NAME_EMPTY", field=[field])
    if len(name) > max_length:
        return UserError(
            message=f"The name is over {max_length} characters.", code="NAME_TOO_LONG",
            field=[field],
        )
    return name


def clean_optional_text(
    value: str | None, *, max_length: int, field: list[str], too_long_code: str = "TOO_LONG"
) -> str | None | UserError:
    """Optional one-line text (a friendly name, a phone number, an address line): white
    space folded, None when empty, no control character, NUL or lone surrogate."""
    text = " ".join((value or "").split())
    if untypable_character(value or "") or has_control_character(text):
        return UserError(message="The text contains a character that cannot be typed.",
                         code="TEXT_INVALID", field=field)
    if not text:
        return None
    if len(text) > max_length:
        return UserError(message=f"Use at most {max_length} characters.", code=too_long_code,
                         field=field)
    return text


def clean_account_name(value: str, field: str = "name") -> str | UserError:
    """1–50 characters after trimming (DESIGN §1)."""
    return clean_name(value, max_length=MAX_ACCOUNT_NAME, field=field)


def clean_person_name(value: str, field: str = "name") -> str | UserError:
    return clean_name(value, max_length=MAX_PERSON_NAME, field=field)
