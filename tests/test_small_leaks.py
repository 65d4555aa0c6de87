"""Small leaks and oracles found from outside (the robustness issue), each by name."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from models.accounts import Membership
from models.contacts import Contact
from tests.conftest import GraphQLClient
from tests.customers import count_rows, new_customer, new_sub_account, pk, register
from tests.test_links import LINK, UNLINK, by_enrollment

MEMBERS = """
{ viewer { accounts(first: 50) { edges { node { number linkGroups {
  id head { number } members { friendlyName account { number } } } } } } } }
"""
DELETE_CONTACT = """
mutation($input: DeleteContactInput!) {
  deleteContact(input: $input) { deletedContactId userErrors { field code } }
}
"""


def _members(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        member
        for edge in result["data"]["viewer"]["accounts"]["edges"]
        for group in edge["node"]["linkGroups"]
        for member in group["members"]
    ]


async def test_the_friendly_name_of_an_account_you_cannot_see_is_null(
    gql: GraphQLClient, tokens: dict[str, str]
) -> None:
    """dev (technical sub-account on the head office) saw "Shops", the head's label for an
    account it cannot see: a label says what the account is. Null, as the account is."""
    hidden_seen = 0
    for persona, token in tokens.items():
        result = await gql.execute(MEMBERS, token=token)
        for member in _members(result):
            if member["account"] is None:
                hidden_seen += 1
                assert member["friendlyName"] is None, (persona, member)
    assert hidden_seen > 0  # the demo has members someone cannot see: the check ran
    owner = (await gql.execute(MEMBERS, token=tokens["olivia"]))
    assert any(member["friendlyName"] for member in _members(owner))  # the owner still sees them


async def test_unlinking_from_another_customers_group_reads_as_no_such_group(gql: GraphQLClient) -> None:
    """NOT_LINKED for a group that exists and NOT_FOUND for one that does not told a stranger
    which group ids exist. Both are NOT_FOUND now."""
    victim = await new_customer(gql)
    member = await register(gql, victim.token)
    linked = await gql.execute(LINK, {"input": {
        "headAccountId": victim.account.id, "kind": "MANAGEMENT",
        **by_enrollment(member.number, member.enrollment_token)}}, token=victim.token)
    group_id = linked["data"]["linkAccount"]["linkGroup"]["id"]
    stranger = await new_customer(gql)
    answers = []
    for candidate in (group_id, "TGlua0dyb3VwOjk5OTk5OTk5"):  # LinkGroup:99999999
        body = (await gql.post(UNLINK, {"input": {"linkGroupId": candidate, "accountId": stranger.account.id}},
                               token=stranger.token)).json()
        answers.append(([error["extensions"]["code"] for error in body.get("errors", [])],
                        body["data"]["unlinkAccount"] if body.get("data") else None))
    assert answers[0] == answers[1] and answers[0][0] == ["NOT_FOUND"], answers


async def test_deleting_a_contact_takes_away_only_permissions_the_caller_holds(
    gql: GraphQLClient, engine: AsyncEngine
) -> None:
    """A CONTACTS_MANAGE holder without billing rights could delete a billing sub-account's
    contact, taking away permissions it cannot take away with setSubAccountPermissions."""
    owner = await new_customer(gql)
    manager = await new_sub_account(gql, owner.token, owner.account.id, ["CONTACTS_MANAGE"])
    billing = await new_sub_account(gql, owner.token, owner.account.id, ["INVOICES_READ"])
    plain = await new_sub_account(gql, owner.token, owner.account.id, [])
    refused = await gql.execute(DELETE_CONTACT, {"input": {"contactId": billing.contact_id}}, token=manager.token)
    assert refused["data"]["deleteContact"] == {
        "deletedContactId": None, "userErrors": [{"field": ["contactId"], "code": "PERMISSION_NOT_HELD"}]}
    assert await count_rows(engine, Membership, Membership.user_id == pk(billing.user_id)) == 1
    # A sub-account carrying nothing the manager lacks goes, and so does the billing one for the owner.
    allowed = await gql.execute(DELETE_CONTACT, {"input": {"contactId": plain.contact_id}}, token=manager.token)
    assert allowed["data"]["deleteContact"]["userErrors"] == []
    by_owner = await gql.execute(DELETE_CONTACT, {"input": {"contactId": billing.contact_id}}, token=owner.token)
    assert by_owner["data"]["deleteContact"]["userErrors"] == []
    assert await count_rows(engine, Contact, Contact.email == billing.email) == 0
