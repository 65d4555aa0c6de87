"""Creating internal staff users (from the CLI)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.passwords import hash_password
from models.users import StaffRole, User
from resolvers.user_errors import UserError
from resolvers.validation import clean_email


class StaffNotCreated(Exception):
    """The email is taken or is not an email: nothing was created."""


async def create_staff(
    session: AsyncSession, *, email: str, name: str, role: StaffRole, password: str
) -> User:
    checked = clean_email(email)
    if isinstance(checked, UserError):
        raise StaffNotCreated(checked.message)
    email = checked
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        raise StaffNotCreated(f"a user with the email {email} already exists")
    user = User(email=email, name=name.strip(), password_hash=hash_password(password), staff_role=role)
    session.add(user)
    await session.commit()
    return user
