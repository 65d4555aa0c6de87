"""Link groups as the dashboard shows them."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from models.links import LinkGroup as LinkGroupRow
from models.links import LinkMember as LinkMemberRow
from resolvers import links
from resolvers.user_errors import UserError as UserErrorValue
from schema.enums import LinkKind, LinkMethod
from schema.payloads import UserError
from schema.prefetch import NOT_PREFETCHED, prefetched_or, selects
from schema.relay import Node, decode_id_of

if TYPE_CHECKING:
    from schema.accounts import Account


@strawberry.type
class LinkMember:
    linked_at: datetime
    linked_via: LinkMethod
    account_pk: strawberry.Private[int]
    label: strawberry.Private[str | None]
    prefetched_account: strawberry.Private[Any] = NOT_PREFETCHED  # Account | None

    @strawberry.field(
        description="The head's name for the member account; null, as the account is, if you "
        "cannot see it (a label such as \"Shops\" says what the account is)."
    )
    def friendly_name(self, info: strawberry.Info) -> str | None:
        from schema.accounts import hides_account

        return None if hides_account(info.context, self.account_pk) else self.label

    @strawberry.field(description="The member account; null if you cannot see it.")
    def account(
        self, info: strawberry.Info
    ) -> Annotated[Account, strawberry.lazy("schema.accounts")] | None:
        from schema.accounts import visible_account

        return prefetched_or(self.prefetched_account, lambda: visible_account(info, self.account_pk))  # type: ignore[return-value]

    @classmethod
    def from_model(cls, row: LinkMemberRow) -> LinkMember:
        return cls(
            label=row.friendly_name, linked_at=row.linked_at,
            linked_via=row.linked_via, account_pk=row.account_id,
        )


@strawberry.type(description="Accounts linked under one head account, for one purpose.")
class LinkGroup(Node):
    kind: LinkKind
    name: str | None
    # Set when the group was loaded with its members, and by ``prefetch_accounts``.
    prefetched_members: strawberry.Private[list[LinkMember]] = NOT_PREFETCHED
    prefetched_head: strawberry.Private[Any] = NOT_PREFETCHED  # Account

    @strawberry.field(
        description="The head (head-office) account. Shown to every member's viewers; its "
        "gated fields still follow the viewer's own permissions on it."
    )
    def head(self, info: strawberry.Info) -> Annotated[Account, strawberry.lazy("schema.accounts")]:
        return prefetched_or(self.prefetched_head, lambda: self._load_head(info))  # type: ignore[return-value]

    async def _load_head(self, info: strawberry.Info) -> Account:
        from schema.accounts import Account

        return Account.from_model(await info.context.loaders.account_by_id.load(self.account_id))

    @strawberry.field(description="Every account in the group other than the head.")
    def members(self, info: strawberry.Info) -> list[LinkMember]:
        return prefetched_or(self.prefetched_members, lambda: self._load_members(info))  # type: ignore[return-value]

    async def _load_members(self, info: strawberry.Info) -> list[LinkMember]:
        rows = await info.context.loaders.link_members_by_group_id.load(self.pk)
        return [LinkMember.from_model(row) for row in rows if not row.is_head]

    @classmethod
    def from_model(
        cls, row: LinkGroupRow, head_account_id: int, member_rows: list[LinkMemberRow] | None = None
    ) -> LinkGroup:
        return cls(
            pk=row.id, account_id=head_account_id, kind=row.kind, name=row.name,
            prefetched_members=NOT_PREFETCHED if member_rows is None
            else [LinkMember.from_model(member) for member in member_rows if not member.is_head],
        )


async def prefetch_accounts(info: strawberry.Info, groups: list[LinkGroup]) -> None:
    """The heads and member accounts of every group on the page, in one batch, when the query
    asks for them (``head``, ``members.account``); see ``schema/prefetch.py``."""
    from schema.accounts import Account, hides_account

    heads = selects(info, "head")
    members = [
        member for group in groups if group.prefetched_members is not NOT_PREFETCHED
        for member in group.prefetched_members
    ] if selects(info, "members", "account") else []
    context = info.context
    shown = {member.account_pk for member in members if not hides_account(context, member.account_pk)}
    wanted = [*([group.account_id for group in groups] if heads else []), *shown]
    if not wanted:
        return
    rows = dict(zip(wanted, await context.loaders.accounts_by_ids.load(tuple(wanted))))
    if heads:
        for group in groups:
            group.prefetched_head = Account.from_model(rows[group.account_id])
    for member in members:
        row = rows[member.account_pk] if member.account_pk in shown else None
        member.prefetched_account = None if row is None else Account.from_model(row)


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
    return LinkGroup.from_model(row, head_account_id=head, member_rows=members)


@strawberry.input(description="Proof of control: the sign-in of the account's owner (email, "
                  "password and, when the owner has two-factor sign-in on, a code).")
class OwnerCredentialsInput:
    account_number: str = strawberry.field(description="The account to link, e.g. ACC-100234.")
    email: str
    password: str
    otp: str | None = strawberry.field(
        default=None,
        description="The owner's authenticator code or a recovery code (spent by a right "
        "proof); required when the owner has two-factor sign-in on. A missing or wrong code is "
        "`INVALID_PROOF`, like any other wrong half.",
    )


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


@strawberry.input
class UpdateLinkMemberInput:
    link_group_id: strawberry.ID
    account_id: strawberry.ID
    friendly_name: str | None = strawberry.field(
        default=None,
        description="The head's name for the member, at most 100 characters; null (or "
        "omitted) or blank clears it.",
    )


@strawberry.type
class UpdateLinkMemberPayload:
    link_group: LinkGroup | None = None
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
        proof = links.OwnerCredentials(given.account_number, given.email, given.password, given.otp)
    else:
        assert input.enrollment is not None
        proof = links.EnrollmentProof(input.enrollment.account_number, input.enrollment.enrollment_token)
    result = await links.link_account(
        context.session, context.access, principal=principal, head_account_id=head_id,
        kind=input.kind, proof=proof, friendly_name=input.friendly_name,
        group_name=input.group_name, client_address=context.client_address,
        throttle=context.throttle, enrollment_key=context.tunables.enrollment_key,
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


async def update_link_member(
    info: strawberry.Info, input: UpdateLinkMemberInput
) -> UpdateLinkMemberPayload:
    context = info.context
    result = await links.update_link_member(
        context.session, context.access, principal=context.signed_in(),
        link_group_id=decode_id_of(input.link_group_id, "LinkGroup", field="linkGroupId"),
        account_id=decode_id_of(input.account_id, "Account", field="accountId"),
        friendly_name=input.friendly_name,
    )
    if isinstance(result, UserErrorValue):
        return UpdateLinkMemberPayload(user_errors=UserError.list_from(result))
    return UpdateLinkMemberPayload(
        link_group=LinkGroup.from_model(result.group, head_account_id=result.head_account_id)
    )


@strawberry.type
class LinkMutations:
    link_account: LinkAccountPayload = strawberry.mutation(
        resolver=link_account,
        description="Link an account you prove control of into the group of `kind` headed by "
        "`headAccountId` (LINKS_MANAGE there, and BILLING_MANAGE for BILLING). Wrong proofs "
        "are throttled as sign-ins are: per (account, user), per user, and per account; wrong "
        "owner credentials also count as failed sign-ins of that email. Audited on both "
        "accounts; the linked account's owner (and its GENERAL contacts) are told by email.",
    )
    unlink_account: UnlinkAccountPayload = strawberry.mutation(
        resolver=unlink_account,
        description="LINKS_MANAGE on the head or on the member. A BILLING unlink applies to "
        "charges made after it. Audited on both accounts; the member's owner is told by email.",
    )
    update_link_member: UpdateLinkMemberPayload = strawberry.mutation(
        resolver=update_link_member,
        description="Renames a member for its head (its `friendlyName`, which account search "
        "matches). LINKS_MANAGE on the head: the member's own side may unlink but not relabel "
        "itself in the head's list. Audited on both accounts.",
    )
