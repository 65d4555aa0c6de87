"""Invoices and their lines."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from urllib.parse import urlencode
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from auth.download_tokens import issue_download_token
from auth.errors import BadInput, Unauthenticated
from auth.permissions import Permission
from models.billing import Invoice as InvoiceRow
from models.billing import InvoiceLine as InvoiceLineRow
from models.billing import InvoiceStatus as InvoiceStatusValue
from resolvers.invoices import InvoiceFilter as InvoiceFilterValues
from resolvers.pagination import Page
from schema.directives import Requires
from schema.enums import InvoiceStatus
from schema.money import Address, Money
from schema.prefetch import NOT_PREFETCHED, prefetch, prefetched_or
from schema.relay import Connection, Node, decode_id_of

if TYPE_CHECKING:
    from schema.accounts import Account
    from schema.links import LinkGroup
    from schema.payments import Payment


DOWNLOAD_PATH = "/invoices/download"


async def download_url(info: strawberry.Info, invoice_ids: list[int]) -> str:
    """A signed link for the signed-in user; the caller has checked INVOICES_READ on each.
    It carries the user's token version and session, so a password change or a logout also
    revokes its links."""
    context = info.context
    if context.principal is None:
        raise Unauthenticated("Sign in to download invoices.")
    user = await context.loaders.user_by_id.load(context.principal.user_id)
    token = issue_download_token(
        secret=context.tokens.secret, issuer=context.tokens.issuer, user_id=user.id,
        token_version=user.token_version, invoice_ids=invoice_ids,
        ttl=timedelta(seconds=context.tunables.download_link_ttl_seconds),
        session_id=context.principal.session_id,
    )
    return f"{DOWNLOAD_PATH}?{urlencode({'token': token})}"


@strawberry.input(
    description="Filters for `Account.invoices` and `Viewer.invoices`; all optional, combined with AND."
)
class InvoiceFilter:
    issued_from: datetime | None = strawberry.field(default=None, description="Inclusive.")
    issued_to: datetime | None = strawberry.field(default=None, description="Exclusive.")
    status: InvoiceStatus | None = None
    number: str | None = strawberry.field(default=None, description="Part of the number.")
    account_ids: list[strawberry.ID] | None = strawberry.field(
        default=None,
        description="`Viewer.invoices` only: invoices paid by one of these accounts "
        "(`Invoice.account`, so a consolidated invoice counts for the head "
        "of its BILLING group, not for the members whose lines it holds). `[]` matches no "
        "invoice; an account whose invoices you may not read adds none. `Account.invoices` "
        "refuses it: that list is one account's already.",
    )

    def to_values(self) -> InvoiceFilterValues:
        """The filter of one account's list (``Account.invoices``), where ``accountIds`` has
        no place: refused, rather than ignored or ANDed into an empty list by surprise."""
        if self.account_ids is not None:
            raise BadInput(
                "`accountIds` filters `Viewer.invoices` only: `Account.invoices` lists the "
                "invoices of one account already.", field="accountIds",
            )
        return self.row_values()

    def row_values(self) -> InvoiceFilterValues:
        """What narrows the rows of any invoice list (everything but ``accountIds``)."""
        return InvoiceFilterValues(
            issued_from=self.issued_from, issued_to=self.issued_to,
            status=self.status, number=self.number,
        )

    def payer_pks(self) -> frozenset[int] | None:
        """The accounts ``accountIds`` names (``Viewer.invoices``); ``None`` when not given."""
        if self.account_ids is None:
            return None
        return frozenset(
            decode_id_of(global_id, "Account", field="accountIds") for global_id in self.account_ids
        )


@strawberry.type
class InvoiceLine:
    description: str
    quantity: int
    unit_price: Money
    amount: Money
    account_number: str = strawberry.field(description="The source account's number at issue.")
    account_name: str = strawberry.field(description="The source account's name at issue.")
    account_pk: strawberry.Private[int]

    @strawberry.field(description="The account the charge came from; null if you cannot see it.")
    async def account(
        self, info: strawberry.Info
    ) -> Annotated[Account, strawberry.lazy("schema.accounts")] | None:
        from schema.accounts import visible_account

        return await visible_account(info, self.account_pk)

    @classmethod
    def from_model(cls, row: InvoiceLineRow, currency: str) -> InvoiceLine:
        return cls(
            description=row.description, quantity=row.quantity,
            unit_price=Money(amount=row.unit_price, currency=currency),
            amount=Money(amount=row.amount, currency=currency), account_pk=row.account_id,
            account_number=row.account_number, account_name=row.account_name,
        )


# An invoice's amounts and addresses are objects of their own, built only when a query asks
# for them: a dashboard shows 500 invoices and, of their seven such objects, only ``total``.
def _subtotal(self: Any) -> Money:
    return Money(amount=self._row.subtotal, currency=self.currency)


def _tax(self: Any) -> Money:
    return Money(amount=self._row.tax, currency=self.currency)


def _total(self: Any) -> Money:
    return Money(amount=self._row.total, currency=self.currency)


def _amount_due(self: Any) -> Money:
    row = self._row
    due = 0 if row.status is InvoiceStatusValue.VOID else max(row.total - row.amount_paid, 0)
    return Money(amount=due, currency=self.currency)


def _bill_to(self: Any) -> Address:
    row = self._row
    return Address(
        name=row.bill_to_name, line1=row.bill_to_line1, line2=row.bill_to_line2,
        city=row.bill_to_city, postal_code=row.bill_to_postal_code,
        country=row.bill_to_country, tax_id=row.bill_to_tax_id,
    )


def _seller(self: Any) -> Address:
    row = self._row
    return Address(name=row.seller_name, line1=", ".join((row.seller_address or "").splitlines()) or None,
                   tax_id=row.seller_tax_id)


@strawberry.type(directives=[Requires(permission=Permission.INVOICES_READ)])
class Invoice(Node):
    number: str
    period_start: date
    period_end: date
    issued_at: datetime
    due_at: datetime
    status: InvoiceStatus
    currency: str
    subtotal: Money = strawberry.field(resolver=_subtotal)
    tax: Money = strawberry.field(resolver=_tax)
    total: Money = strawberry.field(resolver=_total)
    bill_to: Address = strawberry.field(resolver=_bill_to)
    amount_due: Money = strawberry.field(resolver=_amount_due, description="Total minus the payments "
                                         "that succeeded; zero once paid, and for a void invoice.")
    paid_at: datetime | None = strawberry.field(description="When payments first covered the total.")
    voided_at: datetime | None
    void_reason: str | None
    tax_rate_basis_points: int = strawberry.field(description="The tax rate at issue (2100 = 21 %).")
    seller: Address = strawberry.field(
        resolver=_seller,
        description="Who issued it, as printed (empty for invoices issued before sellers were recorded).")
    payer_number: str = strawberry.field(description="The paying account's number at issue.")
    payer_name: str = strawberry.field(description="The paying account's name at issue.")
    link_group_pk: strawberry.Private[int | None]
    _row: strawberry.Private[Any]
    # Set when the page that holds this invoice loaded its lines (schema/prefetch.py).
    prefetched_lines: strawberry.Private[list[InvoiceLine]] = NOT_PREFETCHED

    @strawberry.field(description="The paying account (the head account for a consolidated one).")
    async def account(
        self, info: strawberry.Info
    ) -> Annotated[Account, strawberry.lazy("schema.accounts")]:
        from schema.accounts import Account

        row = await info.context.loaders.account_by_id.load(self.account_id)
        return Account.from_model(row)

    @strawberry.field(description="The BILLING group this invoice consolidates, if any.")
    async def link_group(
        self, info: strawberry.Info
    ) -> Annotated[LinkGroup, strawberry.lazy("schema.links")] | None:
        from schema.links import load_link_group

        if self.link_group_pk is None:
            return None
        return await load_link_group(info, self.link_group_pk)

    @strawberry.field
    def lines(self, info: strawberry.Info) -> list[InvoiceLine]:
        return prefetched_or(self.prefetched_lines, lambda: self._load_lines(info))  # type: ignore[return-value]

    async def _load_lines(self, info: strawberry.Info) -> list[InvoiceLine]:
        rows = await info.context.loaders.invoice_lines_by_invoice_id.load(self.pk)
        return [InvoiceLine.from_model(row, self.currency) for row in rows]

    @strawberry.field(description="Payments and attempts, oldest first (declined ones too).")
    async def payments(
        self, info: strawberry.Info
    ) -> list[Annotated[Payment, strawberry.lazy("schema.payments")]]:
        from schema.payments import Payment

        rows = await info.context.loaders.payments_by_invoice_id.load(self.pk)
        return [Payment.from_model(row, self.account_id) for row in rows]

    @strawberry.field(
        description="A short-lived signed link (path on this server) to the invoice's PDF. "
        "The download re-checks INVOICES_READ for you when it is followed."
    )
    async def download_url(self, info: strawberry.Info) -> str:
        return await download_url(info, [self.pk])

    @classmethod
    def from_model(cls, row: InvoiceRow, line_rows: list[InvoiceLineRow] | None = None) -> Invoice:
        return cls(
            pk=row.id, account_id=row.payer_account_id, number=row.number,
            period_start=row.period_start, period_end=row.period_end, issued_at=row.issued_at,
            due_at=row.due_at, status=row.status, currency=row.currency, _row=row,
            paid_at=row.paid_at, voided_at=row.voided_at, void_reason=row.void_reason,
            tax_rate_basis_points=row.tax_rate_basis_points,
            payer_number=row.payer_number, payer_name=row.payer_name,
            link_group_pk=row.link_group_id,
            prefetched_lines=NOT_PREFETCHED if line_rows is None
            else [InvoiceLine.from_model(line, row.currency) for line in line_rows],
        )


async def invoice_connection(info: strawberry.Info, page: Page[Any]) -> Connection[Invoice]:
    """A page of invoice rows as a connection, their lines loaded with the page (one statement
    for every invoice on it) when the query asks for them."""
    lines = await prefetch(info, ("edges", "node", "lines"),
                           info.context.loaders.invoice_lines_by_invoice_ids, [row.id for row in page.rows])
    return Connection.from_page(page, lambda row: Invoice.from_model(row, lines.get(row.id)))
