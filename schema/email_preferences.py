"""A login's own email preferences: which categories of email it receives."""

from __future__ import annotations

import strawberry

from resolvers import email_preferences
from schema.enums import EmailPreference
from schema.payloads import UserError
from schema.users import User


@strawberry.input
class SetEmailPreferencesInput:
    receive: list[EmailPreference] = strawberry.field(
        description="Every category your login should receive; the others are opted out of. "
        "`[]` opts out of them all. Repeats do not matter.",
    )


@strawberry.type
class SetEmailPreferencesPayload:
    user: User | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


async def set_email_preferences(
    info: strawberry.Info, input: SetEmailPreferencesInput
) -> SetEmailPreferencesPayload:
    context = info.context
    user = await email_preferences.set_email_preferences(
        context.session, principal=context.signed_in(), receive=input.receive,
    )
    return SetEmailPreferencesPayload(user=User.from_model(user))


@strawberry.type
class EmailPreferenceMutations:
    set_email_preferences: SetEmailPreferencesPayload = strawberry.mutation(
        resolver=set_email_preferences,
        description="The email categories your own login receives, whichever account mails it "
        "(as owner, contact or reminder recipient); opted-out mail is not sent and not in any "
        "email history. Security mail (password resets, invitations, sign-in alerts) is not a "
        "category and always comes.",
    )
