"""Tickets by email (DESIGN §1 Tickets): what becomes of a message sent to the support or the
billing address.

The listener (``linkgate/mail_listener.py``) receives it over SMTP and reads it into an
``InboundMail``; ``receive_mail`` decides, in one transaction:

- **a reply** when the subject names a ticket (``[TKT-nnnnnn]``) or ``In-Reply-To`` /
  ``References`` hold one of our Message-IDs (a ticket email's ``<notification-{id}@…>``, or
  the ticket's thread root ``<ticket-{id}@…>``, resolvers/delivery.py). It becomes a customer
  message on that ticket if the sender may see it: a user holding ``TICKETS_READ`` on its
  account, or someone its emails go to (``staff_reply_recipients``: the opener, the owner,
  support contacts, ``SUPPORT`` copies, the CCs). A closed ticket takes no reply.
- **a new ticket** when the sender is the email of a user (owner or sub-account) or a contact
  of exactly one account; its department is the address written to, and the ``Cc`` addresses
  become its CC emails under the portal's rule (at most 10, each valid).
- **a refusal** otherwise, with a permanent SMTP reply (550/552) and nothing created.

Both ways in share the portal's path (``ticket_mutations.create_ticket`` / ``post_message``).
Every message is recorded in ``inbound_messages`` by its Message-ID: a second delivery of one
that was taken is answered 250 and changes nothing; one that was refused is decided again (the
sender may have become a contact since). Staff never write by email: ``From`` is whatever the
sender typed, so a staff address counts for nothing here. The listener is meant to sit behind
the organisation's mail exchanger, which checks SPF/DKIM/DMARC before handing mail on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select, union
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth.permissions import Permission
from auth.policy import load_access
from auth.principals import Principal
from models.accounts import Account, AccountStatus, Membership
from models.base import utcnow
from models.contacts import Contact
from models.notifications import Notification
from models.tickets import Department, InboundMessage, Ticket, TicketStatus
from models.users import User
from resolvers.database import begin_write
from resolvers.ticket_mutations import (
    MAX_SUBJECT, RELATED_TYPE, VIA_EMAIL, AttachedFile, Author, clean_body, clean_cc,
    create_ticket, post_message, staff_reply_recipients,
)
from resolvers.tunables import Tunables
from resolvers.user_errors import UserError

MAX_ATTACHMENTS = 20
NO_TEXT = "(No text: see the attached files.)"
NO_SUBJECT = "(no subject)"

# "[TKT-100004]" anywhere in the subject; our Message-IDs in In-Reply-To/References.
_SUBJECT_REFERENCE = re.compile(r"\[(TKT-[0-9]{1,12})\]", re.IGNORECASE)
_OUR_MESSAGE_ID = re.compile(r"<(notification|ticket)-([0-9]{1,18})@([^<>\s]+)>")

Kind = Literal["opened", "replied", "refused", "duplicate"]


@dataclass(frozen=True)
class Mailboxes:
    """The addresses customers write to, each naming the department of the tickets it opens,
    and the domain of our own Message-IDs (``LINKGATE_MAIL_FROM``'s)."""

    support: str
    billing: str
    domain: str = "linkgate.invalid"

    def department_for(self, address: str) -> Department | None:
        address = address.strip().strip("<>").lower()
        if address == self.support.lower():
            return Department.TECHNICAL
        if address == self.billing.lower():
            return Department.BILLING
        return None

    def address_for(self, department: Department) -> str:
        return self.billing if department is Department.BILLING else self.support


@dataclass(frozen=True)
class InboundMail:
    """A received message as the listener read it: addresses lower-cased, the text without
    the quoted message it answers, the files it carried."""

    message_id: str
    sender: str  # the From address
    sender_name: str
    recipient: str  # the first of our addresses it was delivered to
    subject: str
    # In-Reply-To first, then References newest first: the order to look for our ids in.
    replies_to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    body: str = ""
    attachments: tuple[AttachedFile, ...] = ()
    # An auto-reply, a bounce or bulk mail (Auto-Submitted, Precedence, a null sender).
    automatic: bool = False


@dataclass(frozen=True)
class Outcome:
    """What became of a message, and the SMTP reply that says so."""

    kind: Kind
    code: int
    text: str  # enhanced status code and words, as sent after the code
    reason: str | None = None  # what the record and the log say (refusals)
    ticket_id: int | None = None

    @property
    def reply(self) -> str:
        return f"{self.code} {self.text}"


def _refused(reason: str, text: str, code: int = 550) -> Outcome:
    return Outcome("refused", code, text, reason=reason)


_UNKNOWN_SENDER = ("5.7.1 We cannot tell which account this is for: write from the address "
                   "your account has on file, or open the ticket in the dashboard")
_NO_SUCH_TICKET = ("5.7.1 This message names no ticket its sender may reply to: reply from "
                   "the address the ticket's emails were sent to")


async def receive_mail(
    session: AsyncSession, mail: InboundMail, *, mailboxes: Mailboxes, tunables: Tunables
) -> Outcome:
    """Decide, write and record, once per Message-ID; see the module docstring."""
    await begin_write(session)
    existing = await _record_of(session, mail.message_id)
    if existing is not None and existing.outcome != "refused":
        outcome = await _again(session, existing, mail)
        await session.rollback()
        return outcome
    outcome = await _decide(session, mail, mailboxes=mailboxes, tunables=tunables)
    try:
        if not await _record(session, mail, outcome, refused_before=existing is not None):
            raise _Raced
        await session.commit()
    except (IntegrityError, _Raced):  # the same message, delivered twice at once: one wins
        await session.rollback()
        existing = await _record_of(session, mail.message_id)
        if existing is not None and existing.outcome == "refused" and outcome.kind == "refused":
            await session.rollback()
            return outcome  # refused either way: the answer stands
        if existing is None or existing.outcome == "refused":
            raise  # the listener answers 451: the sender tries again, and is decided then
        outcome = await _again(session, existing, mail)
        await session.rollback()
    return outcome


class _Raced(Exception):
    """Another delivery of the same message was taken while this one was being decided."""


async def _record_of(
    session: AsyncSession, message_id: str, *, lock: bool = False
) -> InboundMessage | None:
    statement = select(InboundMessage).where(InboundMessage.message_id == message_id)
    return await session.scalar(statement.with_for_update() if lock else statement)


async def _again(session: AsyncSession, record: InboundMessage, mail: InboundMail) -> Outcome:
    """A redelivery. Only its own sender hears which ticket it went to: a Message-ID is no
    secret, so another sender reusing one learns nothing (and changes nothing)."""
    if record.sender != mail.sender:
        return Outcome("duplicate", 250, "2.0.0 Already received")
    number = await session.scalar(select(Ticket.number).where(Ticket.id == record.ticket_id))
    return Outcome("duplicate", 250, f"2.0.0 Already received{f' ({number})' if number else ''}",
                   ticket_id=record.ticket_id)


async def _record(
    session: AsyncSession, mail: InboundMail, outcome: Outcome, *, refused_before: bool
) -> bool:
    """One row per Message-ID: a refused message decided again updates its row. False when
    the row is not as it was when the decision began: a twin delivery was taken meanwhile
    (PostgreSQL; on SQLite the write lock keeps twins apart)."""
    row = await _record_of(session, mail.message_id, lock=True)
    if (row is not None) != refused_before or (row is not None and row.outcome != "refused"):
        return False
    if row is None:
        row = InboundMessage(message_id=mail.message_id)
        session.add(row)
    row.sender = mail.sender[:254]
    row.recipient = mail.recipient[:254]
    row.subject = mail.subject[:200]
    row.outcome = outcome.kind
    row.reason = outcome.reason[:200] if outcome.reason else None
    row.ticket_id = outcome.ticket_id
    row.received_at = utcnow()
    return True


async def _decide(
    session: AsyncSession, mail: InboundMail, *, mailboxes: Mailboxes, tunables: Tunables
) -> Outcome:
    if mail.automatic:
        # Accepted and dropped: refusing an out-of-office reply would only bounce it back.
        return Outcome("refused", 250, "2.0.0 Automatic reply ignored", reason="automatic reply")
    if len(mail.attachments) > MAX_ATTACHMENTS:
        return _refused("too many attachments",
                        f"5.3.4 At most {MAX_ATTACHMENTS} attached files per message", 552)
    user = await session.scalar(select(User).where(User.email == mail.sender))
    if user is not None and user.staff_role is not None:
        return _refused("staff address", _UNKNOWN_SENDER)  # staff answer in the dashboard
    named, ticket = await _named_ticket(session, mail, mailboxes)
    if named:
        return await _reply(session, mail, ticket, user, tunables)
    return await _open(session, mail, user, mailboxes, tunables)


async def _named_ticket(
    session: AsyncSession, mail: InboundMail, mailboxes: Mailboxes
) -> tuple[bool, Ticket | None]:
    """Whether the message names a ticket (then it is a reply), and the ticket if it exists."""
    named = False
    for number in _SUBJECT_REFERENCE.findall(mail.subject):
        named = True
        ticket = await session.scalar(select(Ticket).where(Ticket.number == number.upper()))
        if ticket is not None:
            return True, ticket
    for reference in mail.replies_to:
        found = _OUR_MESSAGE_ID.fullmatch(reference.strip())
        if found is None or found.group(3).lower() != mailboxes.domain.lower():
            continue  # someone else's message: not a reference to a ticket
        kind, key = found.group(1), int(found.group(2))
        if kind == "notification":
            row = (await session.execute(
                select(Notification.related_type, Notification.related_id).where(Notification.id == key)
            )).first()
            if row is None or row.related_type != RELATED_TYPE or row.related_id is None:
                continue  # an email of ours about something else (an invoice, say)
            key = row.related_id
        named = True
        ticket = await session.get(Ticket, key)
        if ticket is not None:
            return True, ticket
    return named, None


async def _reply(
    session: AsyncSession, mail: InboundMail, ticket: Ticket | None, user: User | None,
    tunables: Tunables,
) -> Outcome:
    if ticket is None or not await _may_see(session, ticket, mail.sender, user):
        return _refused("no ticket the sender may see", _NO_SUCH_TICKET)
    if ticket.status is TicketStatus.CLOSED:
        return _refused(f"{ticket.number} is closed",
                        f"5.7.1 Ticket {ticket.number} is closed: write a new email (not a "
                        "reply) to open a new ticket")
    body = _body(mail, tunables)
    if isinstance(body, Outcome):
        return body
    author = await _author(session, mail, user, ticket.account_id)
    ticket_id, number = ticket.id, ticket.number
    await post_message(session, ticket, author=author, body=body, via=VIA_EMAIL,
                       attachments=mail.attachments)
    return Outcome("replied", 250, f"2.0.0 Added to ticket {number}", ticket_id=ticket_id)


async def _may_see(session: AsyncSession, ticket: Ticket, sender: str, user: User | None) -> bool:
    """A user who reads the account's tickets, or someone the ticket's emails go to."""
    if user is not None:
        access = await load_access(session, Principal(user_id=user.id))
        if access.has(ticket.account_id, Permission.TICKETS_READ):
            return True
    recipients = {address.lower() for address in await staff_reply_recipients(session, ticket)}
    return sender in recipients


async def _author(session: AsyncSession, mail: InboundMail, user: User | None, account_id: int) -> Author:
    if user is not None:
        return Author.of_user(user)
    contact = await session.scalar(select(Contact).where(
        Contact.account_id == account_id, Contact.email == mail.sender).order_by(Contact.id).limit(1))
    if contact is not None:
        return Author(name=contact.name, email=contact.email, contact_id=contact.id)
    return Author(name=(mail.sender_name or mail.sender)[:100], email=mail.sender)  # a CC


async def _open(
    session: AsyncSession, mail: InboundMail, user: User | None, mailboxes: Mailboxes,
    tunables: Tunables,
) -> Outcome:
    accounts = await _accounts_of(session, mail.sender, user)
    if len(accounts) != 1:
        reason = "unknown sender" if not accounts else f"sender on {len(accounts)} accounts"
        return _refused(reason, _UNKNOWN_SENDER)
    account = await session.get(Account, accounts[0])
    assert account is not None
    if account.status is AccountStatus.CLOSED:
        return _refused("account closed", "5.7.1 The account is closed")
    department = mailboxes.department_for(mail.recipient)
    if department is None:  # pragma: no cover - the listener takes only our addresses
        return _refused("not our address", "5.1.1 No such mailbox here")
    ours = {mailboxes.support.lower(), mailboxes.billing.lower(), mail.sender}
    cc = clean_cc([address for address in mail.cc if address.lower() not in ours])
    errors = [error for error in cc if isinstance(error, UserError)]
    if errors:
        return _refused("bad Cc", f"5.7.1 {errors[0].message.rstrip('.')} (Cc)")
    body = _body(mail, tunables)
    if isinstance(body, Outcome):
        return body
    opener = await _opener(session, mail, user, account)
    account_id = account.id
    ticket = await create_ticket(
        session, account_id=account_id, subject=_subject(mail.subject), body=body,
        department=department, cc_emails=[str(address) for address in cc], opener=opener,
        via=VIA_EMAIL, attachments=mail.attachments,
    )
    return Outcome("opened", 250, f"2.0.0 Ticket {ticket.number} opened", ticket_id=ticket.id)


async def _accounts_of(session: AsyncSession, email: str, user: User | None) -> list[int]:
    """Every account the address is a user (owner, sub-account) or a contact of."""
    statements = [select(Contact.account_id).where(Contact.email == email)]
    if user is not None:
        statements += [select(Account.id).where(Account.owner_id == user.id),
                       select(Membership.account_id).where(Membership.user_id == user.id)]
    return sorted(set((await session.scalars(union(*statements))).all()))


async def _opener(session: AsyncSession, mail: InboundMail, user: User | None, account: Account) -> Author:
    """The user when the address is one on the account (the owner's and a sub-account's
    tickets are emailed by their own rules), else the contact."""
    if user is not None:
        member = account.owner_id == user.id or await session.scalar(select(Membership.id).where(
            Membership.account_id == account.id, Membership.user_id == user.id))
        if member:
            return Author.of_user(user)
    return await _author(session, mail, None, account.id)


def _body(mail: InboundMail, tunables: Tunables) -> str | Outcome:
    checked = clean_body(mail.body, tunables)
    if not isinstance(checked, UserError):
        return checked
    if checked.code == "BODY_EMPTY":
        if mail.attachments:
            return NO_TEXT
        return _refused("no text", "5.6.0 The message has no text to put on a ticket")
    return _refused("text too long", f"5.3.4 {checked.message}", 552)


def _subject(subject: str) -> str:
    text = "".join(c if c.isprintable() else " " for c in subject)
    text = " ".join(text.split())
    if len(text) > MAX_SUBJECT:
        text = text[:MAX_SUBJECT - 1].rstrip() + "…"
    return text or NO_SUBJECT
