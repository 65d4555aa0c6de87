"""Contacts of an account."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import strawberry

from auth.permissions import Permission
from models.contacts import Contact as ContactRow
from schema.directives import gated
from schema.enums import EmailPreference
from schema.money import Address
from schema.relay import Node

if TYPE_CHECKING:
    from schema.accounts import Membership


@strawberry.type(
    description="A person attached to an account. Reached through `contacts` (CONTACTS_READ) or "
    "`billingContact` (INVOICES_READ)."
)
class Contact(Node):
    name: str
    email: str
    phone: str | None
    address: Address
    is_support_contact: bool
    is_billing_contact: bool
    email_preferences: list[EmailPreference]
    user_pk: strawberry.Private[int | None]

    @gated(
        Permission.CONTACTS_MANAGE,
        description="The sub-account this contact was activated as, if any (like `members`).",
    )
    async def sub_account(
        self, info: strawberry.Info
    ) -> Annotated[Membership, strawberry.lazy("schema.accounts")] | None:
        from schema.accounts import membership_of

        if self.user_pk is None:
            return None
        return await membership_of(info, account_id=self.account_id, user_id=self.user_pk)

    @classmethod
    def from_model(cls, row: ContactRow) -> Contact:
        return cls(
            pk=row.id, account_id=row.account_id, name=row.name, email=row.email,
            phone=row.phone,
            address=Address(
                name=row.name, line1=row.address_line1, line2=row.address_line2, city=row.city,
                postal_code=row.postal_code, country=row.country,
            ),
            is_support_contact=row.is_support_contact,
            is_billing_contact=row.is_billing_contact,
            email_preferences=[EmailPreference(value) for value in row.email_preferences],
            user_pk=row.user_id,
        )
