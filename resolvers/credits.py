"""Reading the credit ledger."""

from __future__ import annotations

from models.credits import CreditLedgerEntry
from resolvers.pagination import ChildList, SortKey

NEWEST_FIRST = SortKey((CreditLedgerEntry.id,), descending=True)


# The credit ledger, newest first.
LEDGER_BY_ACCOUNT = ChildList(CreditLedgerEntry, CreditLedgerEntry.account_id, NEWEST_FIRST)
