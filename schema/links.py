"""Link groups as the dashboard shows them."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from models.links import LinkGroup as LinkGroupRow
from models.links import LinkMember as LinkMemberRow
from schema.enums import LinkKind, LinkMethod
from schema.relay import Node

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
    head = next(member.account_id for member in members if member.is_head)
    return LinkGroup.from_model(row, head_account_id=head)
