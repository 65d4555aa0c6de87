"""Storage: SQLAlchemy 2.0 typed models. Importing this package registers every table."""

from models.accounts import Account, AccountStatus, Membership
from models.audit import AuditEvent
from models.base import Base
from models.billing import Charge, ChargeKind, Invoice, InvoiceLine, InvoiceStatus
from models.contacts import Contact, EmailPreference
from models.credits import CreditLedgerEntry, IdempotencyRecord, LedgerEntryKind, LowCreditReminder
from models.identity import (
    EmailedLink, Invitation, LinkPurpose, RecoveryCode, RefreshToken, UserSession,
)
from models.links import LinkGroup, LinkKind, LinkMember, LinkMethod, LinkPeriod
from models.notifications import Notification
from models.rights import RightsVersion
from models.payments import GatewayEvent, Payment, PaymentKind, PaymentMethod, PaymentStatus
from models.services import Service, ServiceStatus
from models.throttle import ThrottleBucket
from models.tickets import (
    AuthorKind, Department, InboundMessage, Ticket, TicketAttachment, TicketMessage, TicketStatus,
)
from models.users import StaffRole, User

__all__ = [
    "Account", "AccountStatus", "AuditEvent", "AuthorKind", "Base", "Charge", "ChargeKind",
    "Contact", "CreditLedgerEntry", "Department", "EmailPreference", "EmailedLink",
    "IdempotencyRecord", "Invitation", "Invoice", "InvoiceLine", "InvoiceStatus",
    "GatewayEvent", "InboundMessage", "LedgerEntryKind", "LinkGroup", "LinkKind", "LinkMember", "LinkMethod",
    "LinkPeriod", "LinkPurpose", "Payment", "PaymentKind", "PaymentMethod", "PaymentStatus",
    "LowCreditReminder", "Membership", "Notification", "RecoveryCode", "RefreshToken",
    "RightsVersion", "Service", "ServiceStatus", "StaffRole", "ThrottleBucket", "Ticket", "TicketAttachment", "TicketMessage",
    "TicketStatus", "User", "UserSession",
]
