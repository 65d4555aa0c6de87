"""Contacts of an account."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import strawberry

from auth.permissions import Permission
from models.contacts import Contact as ContactRow
from resolvers import contacts
from schema.directives import gated
from schema.enums import EmailPreference
from schema.money import Address
from schema.payloads import UserError
from schema.relay import Node, decode_id_of, encode_global_id

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
    address: Address = strawberry.field(description="Its `taxId` is the contact's `taxId`.")
    tax_id: str | None = strawberry.field(
        description="The customer's VAT or other tax ID, normalised (upper case, no spaces, dots, "
        "hyphens or slashes). The billing contact's is printed on invoices issued after it is set."
    )
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
                postal_code=row.postal_code, country=row.country, tax_id=row.tax_id,
            ),
            tax_id=row.tax_id,
            is_support_contact=row.is_support_contact,
            is_billing_contact=row.is_billing_contact,
            email_preferences=[EmailPreference(value) for value in row.email_preferences],
            user_pk=row.user_id,
        )


@strawberry.input
class AddressInput:
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    postal_code: str | None = None
    country: str | None = strawberry.field(default=None, description="ISO 3166 two-letter code.")

    def to_values(self) -> contacts.AddressValues:
        return contacts.AddressValues(
            line1=self.line1, line2=self.line2, city=self.city, postal_code=self.postal_code,
            country=self.country,
        )


TAX_ID_INPUT = (
    "A VAT or other tax ID: 2–32 letters and digits once spaces, dots, hyphens and slashes are "
    "left out; one starting with an EU VAT prefix (DE, FR, NL, EL, …) must have that country's "
    "shape. Empty or null clears it. A wrong one is the userError INVALID_TAX_ID."
)


@strawberry.input
class AddContactInput:
    account_id: strawberry.ID
    name: str
    email: str
    phone: str | None = None
    address: AddressInput | None = None
    tax_id: str | None = strawberry.field(default=None, description=TAX_ID_INPUT)
    is_support_contact: bool = False
    email_preferences: list[EmailPreference] = strawberry.field(default_factory=list)


@strawberry.input(description="Fields left out keep their value; `phone: null` clears it.")
class UpdateContactInput:
    contact_id: strawberry.ID
    name: str | None = strawberry.UNSET
    email: str | None = strawberry.UNSET
    phone: str | None = strawberry.UNSET
    address: AddressInput | None = strawberry.UNSET
    tax_id: str | None = strawberry.field(default=strawberry.UNSET, description=TAX_ID_INPUT)
    is_support_contact: bool | None = strawberry.UNSET
    email_preferences: list[EmailPreference] | None = strawberry.UNSET


@strawberry.input
class DeleteContactInput:
    contact_id: strawberry.ID


@strawberry.type
class AddContactPayload:
    contact: Contact | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class UpdateContactPayload(AddContactPayload):
    pass


@strawberry.type
class DeleteContactPayload:
    deleted_contact_id: strawberry.ID | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


def _given(value: object) -> bool:
    return value is not strawberry.UNSET


async def add_contact(info: strawberry.Info, input: AddContactInput) -> AddContactPayload:
    context = info.context
    changes = contacts.ContactChanges(
        name=input.name, email=input.email, phone=input.phone,
        address=input.address.to_values() if input.address else None, tax_id=input.tax_id,
        is_support_contact=input.is_support_contact,
        email_preferences=list(input.email_preferences),
        given={"name", "email", "phone", "address", "tax_id", "is_support_contact",
               "email_preferences"},
    )
    result = await contacts.add_contact(
        context.session, context.access, principal=context.signed_in(),
        account_id=decode_id_of(input.account_id, "Account", field="accountId"), changes=changes,
    )
    if isinstance(result, list):
        return AddContactPayload(user_errors=UserError.list_from(result))
    return AddContactPayload(contact=Contact.from_model(result))


async def update_contact(info: strawberry.Info, input: UpdateContactInput) -> UpdateContactPayload:
    context = info.context
    fields = {
        "name": input.name, "email": input.email, "phone": input.phone, "tax_id": input.tax_id,
        "is_support_contact": input.is_support_contact,
        "email_preferences": input.email_preferences,
    }
    given = {name for name, value in fields.items() if _given(value)}
    if _given(input.address):
        given.add("address")
    changes = contacts.ContactChanges(
        **{name: value for name, value in fields.items() if name in given},
        address=input.address.to_values() if _given(input.address) and input.address else None,
        given=given,
    )
    result = await contacts.update_contact(
        context.session, context.access, principal=context.signed_in(),
        contact_id=decode_id_of(input.contact_id, "Contact", field="contactId"), changes=changes,
    )
    if isinstance(result, list):
        return UpdateContactPayload(user_errors=UserError.list_from(result))
    return UpdateContactPayload(contact=Contact.from_model(result))


async def delete_contact(info: strawberry.Info, input: DeleteContactInput) -> DeleteContactPayload:
    context = info.context
    result = await contacts.delete_contact(
        context.session, context.access, principal=context.signed_in(),
        contact_id=decode_id_of(input.contact_id, "Contact", field="contactId"),
    )
    if not isinstance(result, ContactRow):
        return DeleteContactPayload(user_errors=UserError.list_from(result))
    await context.reload_access()
    return DeleteContactPayload(deleted_contact_id=strawberry.ID(encode_global_id("Contact", result.id)))


@strawberry.type
class ContactMutations:
    add_contact: AddContactPayload = strawberry.mutation(
        resolver=add_contact, description="Needs CONTACTS_MANAGE on the account."
    )
    update_contact: UpdateContactPayload = strawberry.mutation(
        resolver=update_contact, description="Needs CONTACTS_MANAGE on the contact's account."
    )
    delete_contact: DeleteContactPayload = strawberry.mutation(
        resolver=delete_contact,
        description="Immediate; revokes the sub-account the contact carried, in the same "
        "transaction. Needs CONTACTS_MANAGE.",
    )
