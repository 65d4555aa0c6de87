"""Two-factor sign-in (TOTP): turning it on and off, and recovery codes."""

from __future__ import annotations

import strawberry

from resolvers import two_factor
from resolvers.user_errors import UserError as UserErrorValue
from schema.payloads import UserError


@strawberry.type(description="A secret for an authenticator app; not in force until "
                 "confirmTwoFactor gets a code made from it.")
class EnableTwoFactorPayload:
    secret: str | None = strawberry.field(
        default=None, description="Base32, for typing into the app by hand.",
    )
    otpauth_uri: str | None = strawberry.field(
        default=None, description="The same secret as an `otpauth://` URI, to show as a QR code.",
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class ConfirmTwoFactorInput:
    code: str = strawberry.field(description="The authenticator app's current code.")
    password: str = strawberry.field(
        description="The login's current password: a session alone cannot turn two-factor on.",
    )


@strawberry.input
class RegenerateRecoveryCodesInput:
    code: str = strawberry.field(description="The authenticator app's current code.")


@strawberry.type(description="Recovery codes are shown here once and stored only as digests: "
                 "keep them somewhere safe, apart from the authenticator.")
class RecoveryCodesPayload:
    recovery_codes: list[str] | None = strawberry.field(
        default=None,
        description="Ten single-use codes, each of which signs in instead of the app's code. "
        "Case, spaces and dashes do not matter when typing one.",
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def from_result(cls, result: list[str] | UserErrorValue) -> RecoveryCodesPayload:
        if isinstance(result, UserErrorValue):
            return cls(user_errors=UserError.list_from(result))
        return cls(recovery_codes=result)


@strawberry.input
class DisableTwoFactorInput:
    password: str
    code: str = strawberry.field(description="The app's current code, or a recovery code.")


@strawberry.type
class DisableTwoFactorPayload:
    ok: bool = False
    user_errors: list[UserError] = strawberry.field(default_factory=list)


async def enable_two_factor(info: strawberry.Info) -> EnableTwoFactorPayload:
    context = info.context
    result = await two_factor.enable_two_factor(context.session, principal=context.signed_in())
    if isinstance(result, UserErrorValue):
        return EnableTwoFactorPayload(user_errors=UserError.list_from(result))
    return EnableTwoFactorPayload(secret=result.secret, otpauth_uri=result.otpauth_uri)


async def confirm_two_factor(info: strawberry.Info, input: ConfirmTwoFactorInput) -> RecoveryCodesPayload:
    context = info.context
    result = await two_factor.confirm_two_factor(
        context.session, principal=context.signed_in(), code=input.code,
        password=input.password, client_address=context.client_address,
        throttle=context.throttle,
    )
    return RecoveryCodesPayload.from_result(result)


async def disable_two_factor(info: strawberry.Info, input: DisableTwoFactorInput) -> DisableTwoFactorPayload:
    context = info.context
    error = await two_factor.disable_two_factor(
        context.session, principal=context.signed_in(), password=input.password,
        code=input.code, client_address=context.client_address, throttle=context.throttle,
        staff_require_totp=context.tunables.staff_require_totp,
    )
    if error is not None:
        return DisableTwoFactorPayload(user_errors=UserError.list_from(error))
    return DisableTwoFactorPayload(ok=True)


async def regenerate_recovery_codes(
    info: strawberry.Info, input: RegenerateRecoveryCodesInput
) -> RecoveryCodesPayload:
    context = info.context
    result = await two_factor.regenerate_recovery_codes(
        context.session, principal=context.signed_in(), code=input.code,
        client_address=context.client_address, throttle=context.throttle,
    )
    return RecoveryCodesPayload.from_result(result)


@strawberry.type
class TwoFactorMutations:
    enable_two_factor: EnableTwoFactorPayload = strawberry.mutation(
        resolver=enable_two_factor,
        description="Start two-factor sign-in: a new secret for an authenticator app "
        "(replacing an unconfirmed one). `TWO_FACTOR_ALREADY_ENABLED` when it is on.",
    )
    confirm_two_factor: RecoveryCodesPayload = strawberry.mutation(
        resolver=confirm_two_factor,
        description="Turn two-factor sign-in on with a current code from the new secret and "
        "the password; returns ten recovery codes, once. `INVALID_OTP` or "
        "`INVALID_CREDENTIALS` leaves it off; wrong passwords are throttled as failed sign-ins.",
    )
    disable_two_factor: DisableTwoFactorPayload = strawberry.mutation(
        resolver=disable_two_factor,
        description="Turn two-factor sign-in off; takes the password and a code (or a "
        "recovery code). Failures are throttled as failed sign-ins.",
    )
    regenerate_recovery_codes: RecoveryCodesPayload = strawberry.mutation(
        resolver=regenerate_recovery_codes,
        description="Ten new recovery codes for a current authenticator code; the earlier "
        "ones stop working. Failures are throttled as failed sign-ins.",
    )
