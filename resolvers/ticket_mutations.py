"""Opening, replying to and closing tickets; who is emailed when staff replies (DESIGN §1).

``create_ticket`` and ``post_message`` are the one path for both ways in: the portal's mutations
here and mail to the support address (``resolvers.inbound_mail``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth.errors import NotFound, PermissionDenied
from auth.permissions import Permission
from auth.policy import AccessMap
from auth.principals import Principal
from models.accounts import Account, AccountStatus
from models.base import utcnow
from models.contacts import Contact, EmailPreference
from models.tickets import (
    AuthorKind, Department, Ticket, TicketAttachment, TicketMessage, TicketStatus,
)
from models.users import User
from resolvers.accounts import require_account
from resolvers.audit_log import record_event
from resolvers.database import begin_write
from resolvers.live_events import LiveEvent, Topic, publish
from resolvers.outbox import contacts_receiving, queue_email
from resolvers.tunables import Tunables
from resolvers.user_errors import UserError
from resolvers.validation import clean_email_list, has_control_character

MAX_SUBJECT = 200
MAX_CC_EMAILS = 10
TICKET_NUMBER_PREFIX = "TKT-"
FIRST_TICKET_NUMBER = 100001
TICKET_NUMBER_LOCK = 0x4C47_544B  # any constant shared by every opener ("LGTK")
_NUMBER = re.compile(r"^TKT-([0-9]{1,12})$")
# How a message arrived (``TicketMessage.via``).
VIA_PORTAL = "PORTAL"
VIA_EMAIL = "EMAIL"
# ``Notification.related_type`` of a ticket's emails: the delivery worker threads them.
RELATED_TYPE = "ticket"


def clean_body(body: str, tunables: Tunables) -> str | UserError:
    """A message's text, trimmed and within the limit: the portal's rule and the mail's."""
    text = body.strip()
    if not text:
        return UserError(message="The message cannot be empty.", code="BODY_EMPTY", field=["body"])
    limit = tunables.max_ticket_body_chars
    if len(text) > limit:
        return UserError(
            message=f"The message is {len(text):,} characters long; the limit is {limit:,}.",
            code="BODY_TOO_LONG", field=["body"],
        )
    return text


def _clean_subject(subject: str) -> str | UserError:
    text = " ".join(subject.split())
    if has_control_character(text):
        return UserError(message="The subject contains a character that cannot be typed.",
                         code="SUBJECT_INVALID", field=["subject"])
    if not text:
        return UserError(message="The subject cannot be empty.", code="SUBJECT_EMPTY", field=["subject"])
    if len(text) > MAX_SUBJECT:
        return UserError(
            message=f"The subject is over {MAX_SUBJECT} characters.", code="SUBJECT_TOO_LONG",
            field=["subject"],
        )
    return text


def clean_cc(emails: list[str]) -> list[str] | list[UserError]:
    """The extra CC emails of a ticket, from the portal's ``ccEmails`` or a mail's ``Cc``."""
    return clean_email_list(emails, field="ccEmails", maximum=MAX_CC_EMAILS,
                            too_many_code="TOO_MANY_CC", noun="CC addresses")


async def _next_number(session: AsyncSession) -> str:
    """One past the highest ``TKT-<digits>`` number (the demo starts at TKT-100001); numbers
    in any other shape (imported, say) are left out of the count.

    Openers take turns until they commit: a transaction-level advisory lock on PostgreSQL, the
    write lock (``begin_write``) on SQLite; the unique index stays the last word.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": TICKET_NUMBER_LOCK})
    highest = await session.scalar(
        select(Ticket.number).where(Ticket.number.regexp_match(f"^{TICKET_NUMBER_PREFIX}[0-9]+$"))
        .order_by(func.length(Ticket.number).desc(), Ticket.number.desc()).limit(1)
    )
    match = _NUMBER.match(highest or "")
    last = int(match.group(1)) if match else 0
    return f"{TICKET_NUMBER_PREFIX}{max(last + 1, FIRST_TICKET_NUMBER)}"


@dataclass(frozen=True)
class Author:
    """Who opens a ticket or writes on one: a user (owner, sub-account or staff), or a contact
    writing in by email (no login)."""

    name: str
    email: str
    user_id: int | None = None
    contact_id: int | None = None
    kind: AuthorKind = AuthorKind.CUSTOMER

    @classmethod
    def of_user(cls, user: User) -> Author:
        kind = AuthorKind.STAFF if user.staff_role is not None else AuthorKind.CUSTOMER
        return cls(name=user.name, email=user.email, user_id=user.id, kind=kind)


@dataclass(frozen=True)
class AttachedFile:
    """A file that came with a message (by email), already within the listener's size limit."""

    filename: str
    content_type: str
    data: bytes


async def open_ticket(
    session: AsyncSession, access: AccessMap, *, principal: Principal, account_id: int,
    subject: str, body: str, department: Department, cc_emails: list[str], tunables: Tunables,
) -> Ticket | list[UserError]:
    """TICKETS_WRITE; customers open tickets (staff answer them)."""
    if principal.is_staff:
        raise PermissionDenied("Staff reply to tickets; customers open them.")
    account = await require_account(session, access, account_id, Permission.TICKETS_WRITE)
    checked = [_clean_subject(subject), clean_body(body, tunables)]
    errors = [value for value in checked if isinstance(value, UserError)]
    cc = clean_cc(cc_emails)
    errors += [value for value in cc if isinstance(value, UserError)]
    if account.status is AccountStatus.CLOSED:
        errors.append(UserError(message="The account is closed.", code="ACCOUNT_CLOSED",
                                field=["accountId"]))
    if errors:
        return errors
    opener = await session.get(User, principal.user_id)
    assert opener is not None
    ticket = await create_ticket(
        session, account_id=account_id, subject=str(checked[0]), body=str(checked[1]),
        department=department, cc_emails=[str(address) for address in cc],
        opener=Author.of_user(opener),
    )
    await session.commit()
    return ticket


async def create_ticket(
    session: AsyncSession, *, account_id: int, subject: str, body: str, department: Department,
    cc_emails: list[str], opener: Author, via: str = VIA_PORTAL,
    attachments: Sequence[AttachedFile] = (),
) -> Ticket:
    """The one way a ticket is opened, from the portal (``open_ticket``) or by email
    (``resolvers.inbound_mail``): a number, the ticket, its first message. Everything is
    checked by the caller; nothing is committed here. It must be the transaction's first
    write: a lost race for the number rolls back and tries again."""
    # Ticket numbers come from the highest one so far, openers taking turns (see
    # ``_next_number``); should two still pick the same, the unique index sends the loser round
    # again.
    for _attempt in range(5):
        await begin_write(session)  # on SQLite this also serialises the numbering
        now = utcnow()
        ticket = Ticket(
            account_id=account_id, number=await _next_number(session), subject=subject,
            department=department, status=TicketStatus.OPEN, opened_by_user_id=opener.user_id,
            opened_by_contact_id=opener.contact_id, opened_by_name=opener.name,
            opened_by_email=opener.email, cc_emails=list(cc_emails), created_at=now, updated_at=now,
        )
        session.add(ticket)
        try:
            await session.flush()
        except IntegrityError:
            await session.rollback()
            continue
        break
    else:  # pragma: no cover - five lost races in a row
        raise RuntimeError("could not allocate a ticket number")
    await _add_message(session, ticket, author=opener, body=body, via=via,
                       attachments=attachments, now=now)
    return ticket


async def _require_ticket(session: AsyncSession, access: AccessMap, ticket_id: int) -> Ticket:
    """Another customer's ticket is NOT_FOUND; a visible one needs TICKETS_WRITE."""
    await begin_write(session)
    ticket = await session.get(Ticket, ticket_id)
    if ticket is None or not access.can_see(ticket.account_id):
        raise NotFound("No such ticket.")
    await require_account(session, access, ticket.account_id, Permission.TICKETS_WRITE)
    return ticket


def _closed(ticket: Ticket) -> UserError:
    return UserError(message=f"Ticket {ticket.number} is closed.", code="TICKET_CLOSED",
                     field=["ticketId"])


async def staff_reply_recipients(session: AsyncSession, ticket: Ticket) -> list[str]:
    """DESIGN §1: opened by the owner → the owner and every support contact; opened by a
    sub-account user or a contact → that opener, CC the owner, no one else; plus the CCs.
    The owner is emailed either way, so every contact holding the ``SUPPORT`` preference gets
    a copy (DESIGN §1 Contacts: "copies of ticket emails that go to the owner")."""
    account = await session.get(Account, ticket.account_id)
    assert account is not None
    owner_email = await session.scalar(select(User.email).where(User.id == account.owner_id))
    assert owner_email is not None
    if ticket.opened_by_user_id == account.owner_id:
        support = (await session.scalars(
            select(Contact.email).where(
                Contact.account_id == account.id, Contact.is_support_contact.is_(True)
            ).order_by(Contact.id)
        )).all()
        recipients = [owner_email, *support]
    else:
        recipients = [ticket.opened_by_email, owner_email]
    copies = await contacts_receiving(session, account.id, EmailPreference.SUPPORT)
    return [*recipients, *copies, *ticket.cc_emails]


async def post_message(
    session: AsyncSession, ticket: Ticket, *, author: Author, body: str, via: str = VIA_PORTAL,
    attachments: Sequence[AttachedFile] = (),
) -> TicketMessage:
    """The one way a message lands on an open ticket, typed in the portal (``reply_to_ticket``)
    or sent by email (``resolvers.inbound_mail``): the message and its files, the status it
    moves the ticket to, and for a staff message the emails DESIGN §1 names. Checked by the
    caller; not committed here."""
    now = utcnow()
    message = await _add_message(session, ticket, author=author, body=body, via=via,
                                 attachments=attachments, now=now)
    is_staff = author.kind is AuthorKind.STAFF
    ticket.status = TicketStatus.ANSWERED if is_staff else TicketStatus.CUSTOMER_REPLY
    ticket.updated_at = now
    if is_staff:
        await queue_email(
            session, recipients=await staff_reply_recipients(session, ticket),
            category=EmailPreference.SUPPORT, subject=ticket_email_subject(ticket),
            body=body, account_id=ticket.account_id, related=(RELATED_TYPE, ticket.id),
        )
    return message


def ticket_email_subject(ticket: Ticket) -> str:
    """``[TKT-…] subject``: a reply by email names its ticket by the reference it quotes."""
    return f"[{ticket.number}] {ticket.subject}"


async def _add_message(
    session: AsyncSession, ticket: Ticket, *, author: Author, body: str, via: str,
    attachments: Sequence[AttachedFile], now: datetime,
) -> TicketMessage:
    message = TicketMessage(
        ticket_id=ticket.id, author_user_id=author.user_id, author_name=author.name,
        author_kind=author.kind, body=body, via=via, created_at=now,
    )
    session.add(message)
    await session.flush()  # the message's id, for its files and the event
    if attachments:
        session.add_all(TicketAttachment(
            ticket_message_id=message.id, filename=file.filename, content_type=file.content_type,
            size=len(file.data), data=file.data, created_at=now,
        ) for file in attachments)
    publish(session, LiveEvent(Topic.TICKET, ticket.account_id, ticket.id, message.id))
    return message


async def reply_to_ticket(
    session: AsyncSession, access: AccessMap, *, principal: Principal, ticket_id: int,
    body: str, tunables: Tunables,
) -> Ticket | UserError:
    """Customers with TICKETS_WRITE and staff holding it (SUPPORT, ADMIN). A staff reply
    emails the people DESIGN §1 names and is audited."""
    ticket = await _require_ticket(session, access, ticket_id)
    checked = clean_body(body, tunables)
    if isinstance(checked, UserError):
        return checked
    if ticket.status is TicketStatus.CLOSED:
        return _closed(ticket)
    author = await session.get(User, principal.user_id)
    assert author is not None
    before = ticket.status
    await post_message(session, ticket, author=Author.of_user(author), body=checked)
    if principal.is_staff:
        record_event(
            session, actor=principal, action="ticket.replied", account_id=ticket.account_id,
            target=(RELATED_TYPE, ticket.id), before={"status": before.value},
            after={"status": ticket.status.value, "number": ticket.number},
        )
    await session.commit()
    return ticket


async def close_ticket(
    session: AsyncSession, access: AccessMap, *, principal: Principal, ticket_id: int
) -> Ticket | UserError:
    ticket = await _require_ticket(session, access, ticket_id)
    if ticket.status is TicketStatus.CLOSED:
        return _closed(ticket)
    before = ticket.status
    ticket.status = TicketStatus.CLOSED
    ticket.updated_at = utcnow()
    publish(session, LiveEvent(Topic.TICKET, ticket.account_id, ticket.id))
    if principal.is_staff:
        record_event(
            session, actor=principal, action="ticket.closed", account_id=ticket.account_id,
            target=(RELATED_TYPE, ticket.id), before={"status": before.value},
            after={"status": TicketStatus.CLOSED.value, "number": ticket.number},
        )
    await session.commit()
    return ticket
