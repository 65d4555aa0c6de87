"""The root Mutation, merged from one ``…Mutations`` class per domain module.

To add a mutation: write the resolver in ``resolvers/<domain>.py``, a one-line field in the
domain's ``…Mutations`` class in ``schema/<domain>.py``, and list that class here once.
"""

from __future__ import annotations

from strawberry.tools import merge_types

from schema.account_mutations import AccountMutations
from schema.billing import BillingMutations
from schema.contacts import ContactMutations
from schema.email_preferences import EmailPreferenceMutations
from schema.links import LinkMutations
from schema.payments import PaymentMutations
from schema.sessions import SessionMutations
from schema.sign_in import SignInMutations
from schema.sub_accounts import SubAccountMutations
from schema.tickets import TicketMutations
from schema.two_factor import TwoFactorMutations

Mutation = merge_types(
    "Mutation",
    (SignInMutations, SessionMutations, AccountMutations, LinkMutations, ContactMutations, SubAccountMutations,
     TicketMutations, BillingMutations, PaymentMutations, TwoFactorMutations, EmailPreferenceMutations),
)
