"""Link groups as the dashboard shows them."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from models.links import LinkGroup as LinkGroupRow
from models.links import LinkMember as LinkMemberRow
from resolvers import links
from resolvers.user_errors import UserError as UserErrorValue
from schema.enums import LinkKind, LinkMethod
from schema.payloads import UserError
from schema.relay import Node, decode_id_of

if TYPE_CHECKING:
    from schema.accounts import Account


@strawberry.type
class LinkMember:
    friendly_name: str | None
    linked_at: datetime
    linked_via: LinkMethod
    account_pk: strawberry.Private[int]

    @strawberry.field(description="The member account; null if you cannot see it.")
    async def account(
        self, info: strawberry.Info
    ) -> Annotated[Account, strawberry.lazy("schema.accounts")] | None:
        from schema.accounts import visible_account

        return await visible_account(info, self.account_pk)

    @classmethod
    def from_model(cls, row: LinkMemberRow) -> LinkMember:
        return cls(
            friendly_name=row.friendly_name, linked_at=row.linked_at,
            linked_via=row.linked_via, account_pk=row.account_id,
        )


@strawberry.type(description="Accounts linked under one head account, for one purpose.")
class LinkGroup(Node):
    kind: LinkKind
    name: str | None

    @strawberry.field(
        description="The head (head-office) account. Shown to every member's viewers; its "
        "gated fields still follow the viewer's own permissions on it."
    )
    async def head(self, info: strawberry.Info) -> Annotated[Account, strawberry.lazy("schema.accounts")]:
        from schema.accounts import Account

        row = await info.context.loaders.account_by_id.load(self.account_id)
        return Account.from_model(row)

    @strawberry.field(description="Every account in the group other than the head.")
    async def members(self, info: strawberry.Info) -> list[LinkMember]:
        rows = await info.context.loaders.link_members_by_group_id.load(self.pk)
        return [LinkMember.from_model(row) for row in rows if not row.is_head]

    @classmethod
    def from_model(cls, row: LinkGroupRow, head_account_id: int) -> LinkGroup:
        return cls(pk=row.id, account_id=head_account_id, kind=row.kind, name=row.name)


async def can_see_link_group(info: strawberry.Info, group: LinkGroup) -> bool:
    """A group is seen by whoever sees its head or one of its members, and by no one else."""
    context = info.context
    if not context.enforce_permissions or context.access.can_see(group.account_id):
        return True
    members = await context.loaders.link_members_by_group_id.load(group.pk)
    return any(context.access.can_see(member.account_id) for member in members)


async def load_link_group(info: strawberry.Info, group_id: int) -> LinkGroup | None:
    """A group by id, with its head found through the members loader."""
    loaders = info.context.loaders
    row = await loaders.link_group_by_id.load(group_id)
    if row is None:
        return None
    members = await loaders.link_members_by_group_id.load(group_id)
    head = next((member.account_id for member in members if member.is_head), None)
    if head is None:
        return None  # dissolved: its last member was unlinked
    return LinkGroup.from_model(row, head_account_id=head)


@strawberry.input(description="Proof of control: the email and password of the account's owner.")
class OwnerCredentialsInput:
    account_number: str = strawberry.field(description="The account to link, e.g. ACC-100234.")
    email: str
    password: str


@strawberry.input(description="Proof of control: the account number and the enrollment token "
                  "printed on its invoices.")
class EnrollmentProofInput:
    account_number: str
    enrollment_token: str


@strawberry.input(description="Give exactly one proof: `credentials` or `enrollment`.")
class LinkAccountInput:
    head_account_id: strawberry.ID
    kind: LinkKind
    friendly_name: str | None = None
    group_name: str | None = strawberry.field(
        default=None, description="Names the group when this link creates it."
    )
    credentials: OwnerCredentialsInput | None = None
    enrollment: EnrollmentProofInput | None = None


@strawberry.type
class LinkAccountPayload:
    link_group: LinkGroup | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class UnlinkAccountInput:
    link_group_id: strawberry.ID
    account_id: strawberry.ID


@strawberry.type
class UnlinkAccountPayload:
    link_group: LinkGroup | None = strawberry.field(
        default=None, description="Null when the last member left, which dissolves the group."
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)


PROOF_REQUIRED = UserErrorValue(
    message="Give exactly one proof of control: `credentials` or `enrollment`.",
    code="PROOF_REQUIRED", field=["credentials"],
)


async def link_account(info: strawberry.Info, input: LinkAccountInput) -> LinkAccountPayload:
    context = info.context
    principal = context.signed_in()
    head_id = decode_id_of(input.head_account_id, "Account", field="headAccountId")
    proof: links.Proof
    if (input.credentials is None) == (input.enrollment is None):
        return LinkAccountPayload(user_errors=UserError.list_from(PROOF_REQUIRED))
    if input.credentials is not None:
        given = input.credentials
        proof = links.OwnerCredentials(given.account_number, given.email, given.password)
    else:
        assert input.enrollment is not None
        proof = links.EnrollmentProof(input.enrollment.account_number, input.enrollment.enrollment_token)
    result = await links.link_account(
        context.session, context.access, principal=principal, head_account_id=head_id,
        kind=input.kind, proof=proof, friendly_name=input.friendly_name,
        group_name=input.group_name, throttle=context.throttle,
    )
    if isinstance(result, UserErrorValue):
        return LinkAccountPayload(user_errors=UserError.list_from(result))
    await context.reload_access()
    return LinkAccountPayload(
        link_group=LinkGroup.from_model(result.group, head_account_id=result.head_account_id)
    )


async def unlink_account(info: strawberry.Info, input: UnlinkAccountInput) -> UnlinkAccountPayload:
    context = info.context
    result = await links.unlink_account(
        context.session, context.access, principal=context.signed_in(),
        link_group_id=decode_id_of(input.link_group_id, "LinkGroup", field="linkGroupId"),
        account_id=decode_id_of(input.account_id, "Account", field="accountId"),
    )
    if isinstance(result, UserErrorValue):
        return UnlinkAccountPayload(user_errors=UserError.list_from(result))
    await context.reload_access()
    group = result.group
    return UnlinkAccountPayload(
        link_group=None if group is None
        else LinkGroup.from_model(group, head_account_id=result.head_account_id)
    )


@strawberry.type
class LinkMutations:
    link_account: LinkAccountPayload = strawberry.mutation(
        resolver=link_account,
        description="Link an account you prove control of into the group of `kind` headed by "
        "`headAccountId` (LINKS_MANAGE there, and BILLING_MANAGE for BILLING). Wrong proofs "
        "are throttled per user and per account.",
    )
    unlink_account: UnlinkAccountPayload = strawberry.mutation(
        resolver=unlink_account,
        description="LINKS_MANAGE on the head or on the member. A BILLING unlink applies to "
        "charges made after it.",
    )
