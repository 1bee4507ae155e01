"""Annotator accounts: created by the study owner, chosen from a list, optionally guarded by a PIN.

An account's name is compared in :func:`annotation.db.name_key` form (NFKC, case-folded, spaces
collapsed), so "ann", "Ann" and "ANN " are one account: a typo in case cannot fork a queue.
Lookups everywhere (queue, ratings, CSV import) go through :func:`find_annotator`.

Roles: ``annotator`` rates items in their group's blind queue; ``reviewer`` does the MiSC §5.1
quality-control step — after a campaign is closed they see flagged items and the items on which
the groups disagree (:mod:`annotation.review`).

The PIN is a guard against picking the wrong name on a shared machine, not security: the study
is a local SQLite file its owner can read. It is stored salted and hashed (PBKDF2-SHA256,
``hashlib``), never in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from .db import Study, StudyError, name_key, now, open_study, write_tx

ROLES = ("annotator", "reviewer")
PIN_ITERATIONS = 60_000


@dataclass
class Account:
    id: int
    name: str
    role: str
    has_pin: bool
    default_group: str | None
    created_at: str


def hash_pin(pin: str, salt: bytes | None = None) -> str:
    pin = str(pin)
    if not pin.strip():
        raise StudyError("a PIN cannot be empty (leave it out for no PIN)")
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode("utf-8"), salt, PIN_ITERATIONS)
    return f"pbkdf2-sha256${PIN_ITERATIONS}${salt.hex()}${digest.hex()}"


def _pin_matches(stored: str, pin: str) -> bool:
    try:
        _algo, iters, salt, digest = stored.split("$")
        got = hashlib.pbkdf2_hmac("sha256", str(pin).encode("utf-8"), bytes.fromhex(salt), int(iters))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


def find_annotator(study: Study, name: str) -> tuple[int, str] | None:
    """``(id, stored name)`` of the account whose name matches ``name`` up to case/width/spaces."""
    row = study.conn.execute("SELECT id, name FROM annotators WHERE name_key = ? ORDER BY id LIMIT 1",
                             (name_key(name),)).fetchone()
    return None if row is None else (row[0], row[1])


def annotator_id(study: Study, name: str) -> int:
    found = find_annotator(study, name)
    if found is None:
        known = [a.name for a in list_accounts(study)]
        raise StudyError(f"no annotator {name!r} in this study" + (f"; accounts: {', '.join(known[:12])}" if known else
                                                                   "; the study owner adds accounts on the Studies page"))
    return found[0]


def ensure_annotator(study: Study, name: str, default_group: str | None = None, *, role: str = "annotator",
                     pin: str | None = None) -> int:
    """The id of the account called ``name`` (any case), creating it if new (inside a write transaction)."""
    name = " ".join(str(name).split())
    if not name:
        raise StudyError("an annotator needs a name")
    if role not in ROLES:
        raise StudyError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    found = find_annotator(study, name)
    if found is not None:
        return found[0]
    return study.conn.execute(
        "INSERT INTO annotators (name, default_group, created_at, name_key, pin_hash, role) VALUES (?, ?, ?, ?, ?, ?)",
        (name, default_group, now(), name_key(name), hash_pin(pin) if pin else None, role)).lastrowid


def create_account(study_or_path, name: str, *, role: str = "annotator", pin: str | None = None) -> Account:
    """A new account (the owner's action). A name that matches an existing one up to case is refused."""
    with open_study(study_or_path) as study:
        with write_tx(study):
            found = find_annotator(study, name)
            if found is not None:
                raise StudyError(f"an account {found[1]!r} already exists"
                                 + ("" if found[1] == " ".join(str(name).split()) else f" (names are compared ignoring case, so {name!r} is the same person)"))
            ensure_annotator(study, name, role=role, pin=pin)
        return get_account(study, name)


def set_pin(study_or_path, name: str, pin: str | None) -> None:
    """Set (or with ``None`` remove) an account's PIN."""
    with open_study(study_or_path) as study, write_tx(study):
        aid = annotator_id(study, name)
        study.conn.execute("UPDATE annotators SET pin_hash = ? WHERE id = ?", (hash_pin(pin) if pin else None, aid))


def set_role(study_or_path, name: str, role: str) -> None:
    if role not in ROLES:
        raise StudyError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    with open_study(study_or_path) as study, write_tx(study):
        study.conn.execute("UPDATE annotators SET role = ? WHERE id = ?", (role, annotator_id(study, name)))


def check_pin(study_or_path, name: str, pin: str | None) -> bool:
    """True when the account has no PIN or ``pin`` is its PIN."""
    with open_study(study_or_path) as study:
        row = study.conn.execute("SELECT pin_hash FROM annotators WHERE id = ?", (annotator_id(study, name),)).fetchone()
        return row[0] is None or (pin is not None and _pin_matches(row[0], pin))


def _account(row) -> Account:
    return Account(row["id"], row["name"], row["role"], row["pin_hash"] is not None, row["default_group"], row["created_at"])


def get_account(study_or_path, name: str) -> Account:
    with open_study(study_or_path) as study:
        aid = annotator_id(study, name)
        return _account(study.query("SELECT * FROM annotators WHERE id = ?", (aid,))[0])


def list_accounts(study_or_path, role: str | None = None) -> list[Account]:
    """Every account, by name (case-insensitively), optionally only one role."""
    with open_study(study_or_path) as study:
        rows = study.query("SELECT * FROM annotators" + (" WHERE role = ?" if role else "") + " ORDER BY name_key, id",
                           (role,) if role else ())
        return [_account(r) for r in rows]
