"""The floor for the gateway: the dashboard query written by hand, without GraphQL.

    uvicorn --factory bench.handwritten:create_handwritten_app   (POST /dashboard?first=50)

It runs the very same batched SQL as the gateway — the project's own loader batch functions,
``list_accounts``, ``authenticate`` and ``AccessCache.load``, called directly, one statement per
list level (16 for the dashboard once its rights are cached) — and builds the JSON that ``bench.dataset.DASHBOARD``
returns, with the same permission rules (a gated field is null without its permission). What
remains between this and the gateway is the cost of GraphQL itself: parsing, validation,
execution, field extensions and per-field resolvers. Benchmark only, never deployed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from auth.errors import LinkgateError
from auth.permissions import Permission, sorted_permissions
from auth.access_cache import AccessCache
from auth.policy import AccessMap
from auth.principals import authenticate
from linkgate.context import bearer_token, token_settings
from linkgate.serving import tune_garbage_collection
from linkgate.settings import Settings, get_settings
from models.database import create_engine
from resolvers.accounts import list_accounts
from resolvers.credits import LEDGER_BY_ACCOUNT
from resolvers.database import RequestSession
from resolvers.invoices import INVOICES_BY_PAYER
from resolvers.loaders import Loaders
from resolvers.pagination import ChildList, Page, PageBounds, PageRequest
from resolvers.tickets import TICKETS_BY_ACCOUNT
from schema.relay import encode_global_id

P = Permission
Json = dict[str, Any]


def _time(value: datetime) -> str:
    return value.isoformat()  # what Strawberry's DateTime serializes


def _money(amount: int, currency: str) -> Json:
    return {"amount": amount, "currency": currency}


async def _batch(loader: Any, keys: Sequence[Any]) -> dict[Any, Any]:
    """One loader's batch function on the distinct keys: exactly one statement, no DataLoader."""
    distinct = list(dict.fromkeys(keys))
    if not distinct:
        return {}
    return dict(zip(distinct, await loader.batch_load_fn(distinct)))


async def _pages(loader: Any, child_list: ChildList, parents: list[int], first: int,
                 bounds: PageBounds) -> dict[int, Page[Any]]:
    requests = [PageRequest.checked(child_list, parent, first=first, after=None, bounds=bounds)
                for parent in parents]
    found = await _batch(loader, requests)
    return {request.parent_id: found[request] for request in requests}


async def dashboard(session: AsyncSession, token: str, settings: Settings, first: int,
                    rights: AccessCache) -> Json:
    """``{"data": …}`` for ``DASHBOARD`` with ``$first``, the gateway's statements in its order
    (its rights cached per process as the gateway's are)."""
    principal = await authenticate(session, token, token_settings(settings))
    access = await rights.load(session, principal)
    loaders = Loaders(session)
    bounds = settings.tunables().pages
    page = await list_accounts(session, access, first=first, after=None, search=None, bounds=bounds)
    total = await page.count()
    user = (await _batch(loaders.user_by_id, [principal.user_id]))[principal.user_id]
    ids = [row.id for row in page.rows]
    credit_ids = [pk for pk in ids if access.has(pk, P.CREDITS_READ)]
    invoice_ids = [pk for pk in ids if access.has(pk, P.INVOICES_READ)]
    ticket_ids = [pk for pk in ids if access.has(pk, P.TICKETS_READ)]

    ledgers = await _pages(loaders.ledger_pages_by_account_id, LEDGER_BY_ACCOUNT, credit_ids, 5, bounds)
    places = await _batch(loaders.link_places_by_account_id, ids)
    group_ids = [place.group_id for pk in ids for place in places[pk]]
    groups = await _batch(loaders.link_group_by_id, group_ids)
    group_members = await _batch(loaders.link_members_by_group_id, group_ids)
    heads = {gid: next((m.account_id for m in rows if m.is_head), None) for gid, rows in group_members.items()}
    shown_accounts = [heads[gid] for gid in group_ids if heads[gid] is not None] + [
        m.account_id for gid in group_ids for m in group_members[gid]
        if not m.is_head and access.can_see(m.account_id)
    ]
    accounts = await _batch(loaders.account_by_id, shown_accounts)

    invoices = await _pages(loaders.invoice_pages_by_payer_id, INVOICES_BY_PAYER, invoice_ids, 10, bounds)
    counts = await asyncio.gather(*(invoices[pk].count() for pk in invoice_ids))
    invoice_totals = dict(zip(invoice_ids, counts))
    lines = await _batch(loaders.invoice_lines_by_invoice_id,
                         [row.id for pk in invoice_ids for row in invoices[pk].rows])
    services = await _batch(loaders.services_by_account_id,
                            [pk for pk in ids if access.has(pk, P.SERVICES_READ)])
    tickets = await _pages(loaders.ticket_pages_by_account_id, TICKETS_BY_ACCOUNT, ticket_ids, 10, bounds)
    messages = await _batch(loaders.messages_by_ticket_id,
                            [row.id for pk in ticket_ids for row in tickets[pk].rows])
    contacts = await _batch(loaders.contacts_by_account_id,
                            [pk for pk in ids if access.has(pk, P.CONTACTS_READ)])

    def gated(pk: int, permission: Permission, build: Callable[[], Any]) -> Any:
        return build() if access.has(pk, permission) else None

    def link_groups(pk: int) -> list[Json]:
        shown = []
        for place in places[pk]:
            group, members, head = groups.get(place.group_id), group_members[place.group_id], heads[place.group_id]
            if group is None or head is None:
                continue
            if not (access.can_see(head) or any(access.can_see(m.account_id) for m in members)):
                continue
            head_row = accounts[head]
            shown.append({
                "id": encode_global_id("LinkGroup", group.id), "kind": group.kind.value,
                "name": group.name, "head": {"number": head_row.number, "name": head_row.name},
                "members": [{
                    "friendlyName": m.friendly_name if access.can_see(m.account_id) else None,
                    "linkedVia": m.linked_via.value,
                    "account": _member_account(accounts[m.account_id], access)
                    if access.can_see(m.account_id) else None,
                } for m in members if not m.is_head],
            })
        return shown

    def account(row: Any) -> Json:
        pk = row.id
        return {
            "id": encode_global_id("Account", pk), "number": row.number, "name": row.name,
            "status": row.status.value, "viewerIsOwner": access.is_owner(pk),
            "viewerPermissions": [p.value for p in sorted_permissions(access.permissions_on(pk))],
            "creditBalance": gated(pk, P.CREDITS_READ, lambda: row.credit_balance),
            "creditLedger": gated(pk, P.CREDITS_READ, lambda: {"edges": [{"node": {
                "id": encode_global_id("CreditLedgerEntry", e.id), "kind": e.kind.value,
                "delta": e.delta, "balanceAfter": e.balance_after,
                "createdAt": _time(e.created_at), "note": e.note,
            }} for e in ledgers[pk].rows]}),
            "linkGroups": link_groups(pk),
            "invoices": gated(pk, P.INVOICES_READ, lambda: {
                "totalCount": invoice_totals[pk],
                "edges": [{"node": {
                    "id": encode_global_id("Invoice", i.id), "number": i.number,
                    "status": i.status.value, "issuedAt": _time(i.issued_at),
                    "dueAt": _time(i.due_at), "total": _money(i.total, i.currency),
                    "lines": [{"description": line.description, "quantity": line.quantity,
                               "amount": _money(line.amount, i.currency)} for line in lines[i.id]],
                }} for i in invoices[pk].rows],
            }),
            "services": gated(pk, P.SERVICES_READ, lambda: [{
                "id": encode_global_id("Service", s.id), "name": s.name, "kind": s.kind,
                "status": s.status.value,
                "monthlyPrice": gated(pk, P.INVOICES_READ, lambda s=s: _money(s.monthly_price, s.currency)),
            } for s in services[pk]]),
            "tickets": gated(pk, P.TICKETS_READ, lambda: {"edges": [{"node": {
                "id": encode_global_id("Ticket", t.id), "number": t.number, "subject": t.subject,
                "status": t.status.value, "updatedAt": _time(t.updated_at),
                "messages": [{"authorName": m.author_name, "authorKind": m.author_kind.value,
                              "body": m.body, "createdAt": _time(m.created_at)}
                             for m in messages[t.id]],
            }} for t in tickets[pk].rows]}),
            "contacts": gated(pk, P.CONTACTS_READ, lambda: [{
                "id": encode_global_id("Contact", c.id), "name": c.name, "email": c.email,
                "phone": c.phone, "isBillingContact": c.is_billing_contact,
                "isSupportContact": c.is_support_contact,
            } for c in contacts[pk]]),
        }

    return {"data": {"viewer": {
        "user": {"email": user.email, "name": user.name},
        "accounts": {
            "totalCount": total,
            "pageInfo": {"hasNextPage": page.has_next_page,
                         "endCursor": page.cursors[-1] if page.cursors else None},
            "edges": [{"node": account(row)} for row in page.rows],
        },
    }}}


def _member_account(row: Any, access: AccessMap) -> Json:
    return {
        "id": encode_global_id("Account", row.id), "number": row.number, "name": row.name,
        "creditBalance": row.credit_balance if access.has(row.id, P.CREDITS_READ) else None,
    }


class _CompactJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)  # the gateway's encoder


def create_handwritten_app(settings: Settings | None = None, engine: AsyncEngine | None = None) -> Starlette:
    """``POST /dashboard?first=N`` with a bearer token; settings from ``LINKGATE_*`` as the gateway."""
    settings = settings or get_settings()
    engine = engine or create_engine(settings.database_url, **settings.pool_options())
    sessions = async_sessionmaker(engine, class_=RequestSession, expire_on_commit=False)
    rights = AccessCache(settings.access_cache_size)

    async def endpoint(request: Request) -> Response:
        token = bearer_token(request)
        if token is None:
            return _CompactJSON({"errors": [{"message": "Sign in."}]}, status_code=401)
        first = min(max(int(request.query_params.get("first", "50")), 1), 100)
        async with sessions() as session:
            try:
                return _CompactJSON(await dashboard(session, token, settings, first, rights))
            except LinkgateError as error:
                return _CompactJSON({"errors": [{"message": error.message}]}, status_code=400)

    async def healthz(request: Request) -> Response:
        return _CompactJSON({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tune_garbage_collection(settings.gc_young_threshold)  # as the gateway does: same runtime
        yield

    return Starlette(routes=[Route("/dashboard", endpoint, methods=["POST"]),
                             Route("/healthz", healthz)], lifespan=lifespan)
