"""Creating internal staff users (from the CLI)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.passwords import hash_password
from models.users import StaffRole, User
from resolvers.sign_in import normalize_email


class StaffExists(Exception):
    pass


async def create_staff(
    session: AsyncSession, *, email: str, name: str, role: StaffRole, password: str
) -> User:
    email = normalize_email(email)
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        raise StaffExists(f"a user with the email {email} already exists")
    user = User(email=email, name=name.strip(), password_hash=hash_password(password), staff_role=role)
    session.add(user)
    await session.commit()
    return user
