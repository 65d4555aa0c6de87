"""Checks on user input that come back as ``userErrors``: one function per kind of value."""

from __future__ import annotations

import re
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


# Tax IDs --------------------------------------------------------------------------------------

MIN_TAX_ID = 2
MAX_TAX_ID = 32  # contacts.tax_id and invoices.bill_to_tax_id are String(32)
# Written between the groups of a tax ID ("NL 8530.43.211.B01", "CHE-123.456.789"), as is white
# space; never part of it.
_TAX_ID_SEPARATORS = str.maketrans("", "", ".-/")
_TAX_ID = re.compile(r"[A-Z0-9]+", re.ASCII)
# The body after each EU VAT prefix (the member states, EL for Greece, XI for Northern Ireland),
# with what the error says: the shapes VIES documents, checked without check digits.
_EU_VAT: dict[str, tuple[str, str]] = {
    "AT": (r"U[0-9]{8}", "U and 8 digits"),
    "BE": (r"[01][0-9]{9}", "10 digits starting with 0 or 1"),
    "BG": (r"[0-9]{9,10}", "9 or 10 digits"),
    "CY": (r"[0-9]{8}[A-Z]", "8 digits and a letter"),
    "CZ": (r"[0-9]{8,10}", "8 to 10 digits"),
    "DE": (r"[0-9]{9}", "9 digits"),
    "DK": (r"[0-9]{8}", "8 digits"),
    "EE": (r"[0-9]{9}", "9 digits"),
    "EL": (r"[0-9]{9}", "9 digits"),
    "ES": (r"[0-9A-Z][0-9]{7}[0-9A-Z]", "9 characters: a letter or digit, 7 digits, a letter or digit"),
    "FI": (r"[0-9]{8}", "8 digits"),
    "FR": (r"[0-9A-HJ-NP-Z]{2}[0-9]{9}", "2 letters or digits (not I or O) and 9 digits"),
    "HR": (r"[0-9]{11}", "11 digits"),
    "HU": (r"[0-9]{8}", "8 digits"),
    "IE": (r"[0-9]{7}[A-W][A-I]?|[0-9][A-Z][0-9]{5}[A-W]", "7 digits and 1 or 2 letters"),
    "IT": (r"[0-9]{11}", "11 digits"),
    "LT": (r"[0-9]{9}|[0-9]{12}", "9 or 12 digits"),
    "LU": (r"[0-9]{8}", "8 digits"),
    "LV": (r"[0-9]{11}", "11 digits"),
    "MT": (r"[0-9]{8}", "8 digits"),
    "NL": (r"[0-9]{9}B[0-9]{2}", "9 digits, B and 2 digits"),
    "PL": (r"[0-9]{10}", "10 digits"),
    "PT": (r"[0-9]{9}", "9 digits"),
    "RO": (r"[1-9][0-9]{1,9}", "2 to 10 digits"),
    "SE": (r"[0-9]{10}01", "12 digits ending in 01"),
    "SI": (r"[0-9]{8}", "8 digits"),
    "SK": (r"[0-9]{10}", "10 digits"),
    "XI": (r"[0-9]{9}|[0-9]{12}|GD[0-9]{3}|HA[0-9]{3}", "9 or 12 digits"),
}
_EU_VAT_BODY = {prefix: re.compile(body, re.ASCII) for prefix, (body, _) in _EU_VAT.items()}
# An Italian personal tax code (codice fiscale) opens with the consonants of a surname, which can
# spell an EU prefix (FeRRari: FRR…): it is a tax ID of its own, not a malformed VAT number.
_CODICE_FISCALE = re.compile(
    r"[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]",
    re.ASCII,
)


def clean_tax_id(value: str | None, field: list[str]) -> str | None | UserError:
    """A customer's VAT or other tax ID as invoices print it: upper case, the separators people
    type between groups (white space, dots, hyphens, slashes) left out, so the same number is stored
    one way whatever way it was typed; then 2–32 letters A–Z and digits. ``None`` (cleared) when
    empty. One that starts with an EU VAT prefix must have that country's shape: a digit too
    many or too few is the typo this catches before it is printed on an invoice."""
    if value is None:
        return None
    tax_id = "".join(value.split()).translate(_TAX_ID_SEPARATORS)
    if not tax_id:
        return None
    # ASCII before upper-casing: "ﬁ" would otherwise become "FI", a prefix no one typed.
    tax_id = tax_id.upper() if tax_id.isascii() else tax_id
    if not (MIN_TAX_ID <= len(tax_id) <= MAX_TAX_ID and _TAX_ID.fullmatch(tax_id)):
        return UserError(
            message=f"A tax ID is {MIN_TAX_ID} to {MAX_TAX_ID} letters A–Z and digits "
            "(spaces, dots, hyphens and slashes between them are left out).",
            code="INVALID_TAX_ID", field=field,
        )
    prefix, body = tax_id[:2], tax_id[2:]
    if prefix in _EU_VAT_BODY and not _CODICE_FISCALE.fullmatch(tax_id):
        if not _EU_VAT_BODY[prefix].fullmatch(body):
            return UserError(
                message=f"{prefix} VAT numbers are {prefix} followed by {_EU_VAT[prefix][1]}.",
                code="INVALID_TAX_ID", field=field,
            )
    return tax_id
