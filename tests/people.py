"""People for the tests: accounts with a role and their personal API tokens (SPEC section 12)."""

from __future__ import annotations

from pathlib import Path

from hub import auth_store
from hub.store import Store

PASSWORD = "correct horse 电池"


def add_person(home: Path, name: str, role: str, dept: str | None = None, password: str = PASSWORD) -> str:
    """Add ``name`` to the hub at ``home``; returns a personal token of theirs."""
    with Store(home / "hub.db") as store:
        auth_store.add_user(store, name, role, dept, password)
        return auth_store.issue_token(store, name)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
