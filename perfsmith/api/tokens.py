"""API tokens: created once (the secret is shown then and never again), stored as SHA-256,
each bound to a tenant whose runs are the only ones it can see."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from perfsmith.errors import PerfsmithError
from perfsmith.storage.db import Database
from perfsmith.storage.models import ApiToken, utcnow

TOKEN_PREFIX = "psk_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class TokenError(PerfsmithError):
    """A token could not be created, found or revoked."""


@dataclass(frozen=True)
class TokenInfo:
    name: str
    tenant: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool

    @classmethod
    def of(cls, row: ApiToken) -> TokenInfo:
        stored = {f.name: getattr(row, f.name) for f in fields(cls) if f.name != "revoked"}
        return cls(revoked=row.revoked_at is not None, **stored)


@dataclass(frozen=True)
class Principal:
    """Who a request is from: the token's name and its tenant."""

    token_name: str
    tenant: str


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _check_name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise TokenError(
            f"{what} {value!r} must be 1-64 characters of letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return value


class TokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, name: str, *, tenant: str | None = None) -> str:
        """A new token named `name` for `tenant` (default: the name); returns the secret."""
        _check_name(name, "token name")
        tenant = _check_name(tenant or name, "tenant")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        try:
            with self.db.session() as s:
                s.add(
                    ApiToken(
                        name=name,
                        tenant=tenant,
                        token_hash=hash_token(secret),
                        prefix=secret[: len(TOKEN_PREFIX) + 6],
                    )
                )
        except IntegrityError as exc:
            raise TokenError(
                f"a token named {name!r} exists already; revoke it first or pick another name"
            ) from exc
        return secret

    def authenticate(self, secret: str) -> Principal | None:
        """The principal a secret belongs to, or None for unknown or revoked tokens."""
        if not secret.startswith(TOKEN_PREFIX):
            return None
        with self.db.session() as s:
            row = s.scalar(
                select(ApiToken).where(
                    ApiToken.token_hash == hash_token(secret), ApiToken.revoked_at.is_(None)
                )
            )
            if row is None:
                return None
            now = utcnow()
            last = row.last_used_at
            if last is not None and last.tzinfo is None:  # SQLite hands back naive times
                last = last.replace(tzinfo=now.tzinfo)
            if last is None or (now - last).total_seconds() > 60:
                row.last_used_at = now  # at most one write a minute per token
            return Principal(token_name=row.name, tenant=row.tenant)

    def list(self) -> list[TokenInfo]:
        with self.db.session() as s:
            rows = s.scalars(select(ApiToken).order_by(ApiToken.created_at, ApiToken.id))
            return [TokenInfo.of(r) for r in rows]

    def revoke(self, name: str) -> None:
        with self.db.session() as s:
            done = s.execute(
                update(ApiToken)
                .where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            if getattr(done, "rowcount", 0) == 0:
                raise TokenError(
                    f"no active token named {name!r}; `perfsmith tokens list` shows them"
                )
