"""Business knobs the resolvers need, filled from the server's settings once per process."""

from __future__ import annotations

from dataclasses import dataclass, field

from resolvers.pagination import PageBounds


@dataclass(frozen=True, slots=True)
class Tunables:
    currency: str = "EUR"
    # Price of one prepaid credit, in minor units of ``currency``.
    credit_unit_price: int = 5
    # VAT on invoices, in basis points (2100 = 21 %); amounts round half up to whole minor units.
    tax_rate_basis_points: int = 2100
    invoice_due_days: int = 14
    max_ticket_body_chars: int = 20_000
    # How long an invoice download link (``Invoice.downloadUrl``) stays valid.
    download_link_ttl_seconds: int = 300
    pages: PageBounds = field(default_factory=PageBounds)
    # Identity: how long emailed links live, where they point, whether staff need 2FA.
    invitation_ttl_seconds: int = 7 * 86_400
    password_reset_ttl_seconds: int = 30 * 60
    sign_up_ttl_seconds: int = 86_400
    public_url: str = "http://localhost:8000"
    staff_require_totp: bool = False
    # Sign-up and reset links one client may have mailed per window (resolvers/emailed_links.py).
    mail_links_per_client: int = 20
    # signUp and requestPasswordReset answer no sooner than this (resolvers/timing.py).
    answer_floor_seconds: float = 0.4
    # Enrollment tokens are derived under this key (auth/enrollment.py); empty where the process
    # has no LINKGATE_SECRET_KEY, and then nothing may derive one.
    enrollment_key: bytes = field(default=b"", repr=False)
    # The seller printed on every invoice issued (a snapshot per invoice), and how to pay.
    seller: Seller = field(default_factory=lambda: Seller())
    # A card payment still PENDING after this long may be driven again by any payInvoice
    # click (with the processor key it was first sent with, so it is never charged twice).
    payment_pending_retry_seconds: int = 120


@dataclass(frozen=True, slots=True)
class Seller:
    name: str | None = None
    address: str | None = None  # lines separated by newlines
    tax_id: str | None = None
    payment_instructions: str | None = None
