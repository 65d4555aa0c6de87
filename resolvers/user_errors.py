"""Expected business failures, returned (not raised) in mutation payloads as ``userErrors``.

``USER_ERROR_CODES`` is the one list of codes a mutation can return, each with what it means:
the GraphQL enum ``UserErrorCode`` is generated from it (schema/enums.py), README's table of
codes is checked against it, and a test reads the source of every resolver for the codes it
writes (tests/test_user_error_codes.py). A ``UserError`` with a code not listed here cannot be
built: a new code fails loudly in the tests instead of as a value the enum cannot serialize.
"""

from __future__ import annotations

from dataclasses import dataclass

USER_ERROR_CODES: dict[str, str] = {
    "ACCOUNT_CLOSED": "The account is closed: it cannot be renamed, linked or get new tickets.",
    "ALREADY_ACCEPTED": "The invitation was already accepted, so it cannot be revoked; change "
    "the sub-account's permissions or delete the contact instead.",
    "ALREADY_ACTIVATED": "The contact is already a sub-account of this account.",
    "ALREADY_LINKED": "The account (or the head) is already in a link group of this kind; "
    "groups do not chain.",
    "ALREADY_PAID": "The invoice is already paid (perhaps by an earlier attempt): there is "
    "nothing to pay, and it cannot be voided.",
    "BALANCE_LIMIT": "The credit balance would exceed its maximum (2^31 − 1 credits).",
    "BODY_EMPTY": "The ticket message is empty.",
    "BODY_TOO_LONG": "The ticket message is over its maximum length.",
    "CARD_DECLINED": "The card processor declined the card or the charge; `message` says why.",
    "CONTACT_NOT_ON_ACCOUNT": "The contact is not a contact of this account.",
    "DESCRIPTION_EMPTY": "The usage needs a description.",
    "EMAIL_TAKEN": "The account already has a contact with this email.",
    "GATEWAY_UNAVAILABLE": "The card processor did not answer; try again.",
    "HEAD_ACCOUNT": "The account is the head of the link group, not a member: it cannot be "
    "unlinked or named as one.",
    "IDEMPOTENCY_KEY_REUSED": "This idempotency key was already used with different input.",
    "INSUFFICIENT_CREDITS": "The balance holds fewer credits than the operation takes.",
    "INVALID_AMOUNT": "The amount is not a whole number above zero, or is over its limit "
    "(credits per operation, or what is due).",
    "INVALID_CARD_TOKEN": "The card token is malformed, or the card processor does not accept it.",
    "INVALID_COUNTRY": "The country is not a two-letter ISO code.",
    "INVALID_CREDENTIALS": "The email or password (or the current password) is incorrect.",
    "INVALID_EMAIL": "The email address is not valid.",
    "INVALID_IDEMPOTENCY_KEY": "The idempotency key is missing where one is required, or is not "
    "a short run of printable characters.",
    "INVALID_OTP": "The two-factor code is incorrect or was already used.",
    "INVALID_PERIOD": "The period is not a month written YYYY-MM.",
    "INVALID_PROOF": "The account number and the proof of control (credentials or enrollment "
    "token) do not match.",
    "INVALID_TAX_ID": "The tax ID is not 2 to 32 letters and digits, or not a VAT number of the "
    "country its prefix names.",
    "INVALID_THRESHOLD": "The low-credit threshold is negative.",
    "INVALID_TOKEN": "The emailed link's token or the refresh token is unknown, spent, expired "
    "or of another kind.",
    "INVOICE_PARTLY_PAID": "Part of the invoice has been paid, so it cannot be voided.",
    "INVOICE_TOO_LARGE": "An invoice of the run would exceed the largest amount an invoice can "
    "hold; nothing was invoiced.",
    "INVOICE_VOID": "The invoice was voided: there is nothing to pay, and nothing to void again.",
    "NAME_EMPTY": "The name is empty.",
    "NAME_INVALID": "The name contains a character that cannot be typed (a control character, "
    "a NUL or a lone surrogate).",
    "NAME_TOO_LONG": "The name is over its maximum length.",
    "NOTE_TOO_LONG": "The note (or the usage's description) is over its maximum length.",
    "NOT_LINKED": "The account is not a member of this link group.",
    "OTP_REQUIRED": "Two-factor sign-in is on: send the authenticator app's code (or a recovery "
    "code) as `otp`.",
    "OWNER_NOT_RESTRICTABLE": "The account's owner holds every permission and cannot be made a "
    "restricted sub-account.",
    "PASSWORD_INVALID": "The password contains a character that cannot be typed.",
    "PASSWORD_TOO_LONG": "The password is over 256 characters.",
    "PASSWORD_TOO_SHORT": "The password is under 8 characters.",
    "PAYMENTS_UNAVAILABLE": "Card payments are not available on this server.",
    "PAYMENT_ABANDONED": "The attempt got no answer for too long and was cancelled; nothing was "
    "charged.",
    "PAYMENT_IN_PROGRESS": "Another payment of this invoice is in progress; wait for its result.",
    "PAYMENT_METHOD_NOT_FOUND": "No such card on the paying account (or it belongs to another "
    "card processor).",
    "PAYMENT_PENDING": "The card processor has not confirmed the payment yet; retry with the "
    "same idempotency key.",
    "PERIOD_NOT_ENDED": "The month has not ended yet.",
    "PERMISSION_NOT_HELD": "Only permissions you hold on the account yourself can be granted or "
    "taken away.",
    "PROOF_REQUIRED": "Give exactly one proof of control: `credentials` or `enrollment`.",
    "REASON_REQUIRED": "Say why the invoice is voided.",
    "REFERENCE_REQUIRED": "Say where the money came from (e.g. the bank transfer's reference).",
    "SAME_ACCOUNT": "The two accounts must differ (a transfer, or a link, to the account itself).",
    "SIGN_IN_REQUIRED": "The invited email already has a login: sign in as it, then accept.",
    "STAFF_USER": "Staff logins cannot be sub-accounts.",
    "SUBJECT_EMPTY": "The ticket subject is empty.",
    "SUBJECT_INVALID": "The ticket subject contains a character that cannot be typed.",
    "SUBJECT_TOO_LONG": "The ticket subject is over its maximum length.",
    "TEXT_INVALID": "A one-line text (friendly name, phone, address line, reference) contains a "
    "character that cannot be typed.",
    "TICKET_CLOSED": "The ticket is closed.",
    "TOO_LONG": "A text (phone, address line…) is over its maximum length.",
    "TOO_MANY_CC": "Too many CC addresses on the ticket.",
    "TOO_MANY_INVITATIONS": "Too many invitations today (to one address, or from one account or "
    "inviter); try again tomorrow.",
    "TOO_MANY_PAYMENT_METHODS": "The account already keeps as many cards as it may; remove one first.",
    "TOO_MANY_RECIPIENTS": "Too many recipients for the low-credit reminder.",
    "TWO_FACTOR_ALREADY_ENABLED": "Two-factor sign-in is already on; turn it off first to start over.",
    "TWO_FACTOR_NOT_ENABLED": "Two-factor sign-in is not on.",
    "TWO_FACTOR_NOT_STARTED": "There is no code to confirm yet: call `enableTwoFactor` first.",
    "TWO_FACTOR_REQUIRED": "Staff logins must keep two-factor sign-in on.",
    "TWO_FACTOR_SETUP_REQUIRED": "Staff logins must use two-factor sign-in; an administrator sets "
    "it up.",
    "WRONG_USER": "The invitation is for another email than the login signed in.",
}


@dataclass(frozen=True)
class UserError:
    message: str
    code: str
    field: list[str] | None = None

    def __post_init__(self) -> None:
        """A code outside ``USER_ERROR_CODES`` would reach clients as a value the
        ``UserErrorCode`` enum does not list: refuse it where it is written."""
        if self.code not in USER_ERROR_CODES:
            raise ValueError(
                f"Unknown userErrors code {self.code!r}: add it, with what it means, to "
                "USER_ERROR_CODES in resolvers/user_errors.py (and to README's table)."
            )
