"""API keys with roles, stored hashed, checked in constant time.

A key is a random token (``recsys api-key create ROLE`` makes one: ``rk_`` + 43 URL-safe
characters, 256 bits). Only its SHA-256 is stored, in a TOML file (``RECSYS_API_KEYS_FILE``)::

    [[keys]]
    name = "web-shop"          # optional, shown in logs and metrics instead of the key
    role = "storefront"
    sha256 = "9f86d0...08"     # hex digest of the key

or in ``RECSYS_API_KEYS`` as comma-separated ``role:sha256hex`` entries. A salted slow hash
(scrypt) is not needed for 256-bit random tokens and would cost milliseconds per request; SHA-256
of a high-entropy key cannot be reversed by guessing. Clients send ``Authorization: Bearer KEY``
or ``X-API-Key: KEY``. The digest of the presented key is compared with every stored digest using
:func:`hmac.compare_digest` (no early exit), so timing does not reveal how much of a digest
matched.

Roles: ``storefront`` (recommendations, similar items), ``marketer`` (profiles, audiences),
``ingest`` (purchase events), ``admin`` (models, and everything else).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final


class Role(StrEnum):
    STOREFRONT = "storefront"
    MARKETER = "marketer"
    INGEST = "ingest"
    ADMIN = "admin"


class Permission(StrEnum):
    RECOMMEND = "recommend"
    PROFILES = "profiles"
    AUDIENCES = "audiences"
    EVENTS = "events"
    MODELS = "models"


ROLE_PERMISSIONS: Final[dict[Role, frozenset[Permission]]] = {
    Role.STOREFRONT: frozenset({Permission.RECOMMEND}),
    Role.MARKETER: frozenset({Permission.PROFILES, Permission.AUDIENCES}),
    Role.INGEST: frozenset({Permission.EVENTS}),
    Role.ADMIN: frozenset(Permission),
}

KEY_PREFIX: Final[str] = "rk_"
_HEX64: Final = re.compile(r"^[0-9a-f]{64}$")
#: Longer presented keys are rejected before hashing (a key is 46 characters).
MAX_KEY_LENGTH: Final[int] = 256


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key: its role, a display name and the SHA-256 hex digest of the token."""

    role: Role
    sha256: str
    name: str

    def allows(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]


def hash_key(token: str) -> str:
    """The hex SHA-256 of a key, as stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_key() -> str:
    """A fresh random key (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _role(value: object, where: str) -> Role:
    try:
        return Role(str(value))
    except ValueError:
        raise ValueError(
            f"{where}: role {value!r} is not one of {', '.join(r.value for r in Role)}"
        ) from None


def _digest(value: object, where: str) -> str:
    text = str(value).strip().lower()
    if not _HEX64.match(text):
        raise ValueError(
            f"{where}: sha256 must be the 64-character hex digest of the key (not the key "
            "itself); `recsys api-key create ROLE` prints both"
        )
    return text


def parse_inline_keys(text: str, source: str = "RECSYS_API_KEYS") -> tuple[ApiKey, ...]:
    """Keys from ``role:sha256hex[,role:sha256hex...]``."""
    keys = []
    for position, entry in enumerate(part.strip() for part in text.split(",")):
        if not entry:
            continue
        where = f"{source} entry {position + 1}"
        role, sep, digest = entry.partition(":")
        if not sep:
            raise ValueError(f"{where}: expected role:sha256hex, got {entry[:20]!r}...")
        keys.append(
            ApiKey(_role(role.strip(), where), _digest(digest, where), f"{role}-{position + 1}")
        )
    return tuple(keys)


def read_keys_file(path: Path) -> tuple[ApiKey, ...]:
    """Keys from a TOML file of ``[[keys]]`` tables (role, sha256, optional name)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"RECSYS_API_KEYS_FILE={path}: no such file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the API keys file: {exc}") from exc
    entries = data.get("keys", [])
    unknown = sorted(set(data) - {"keys"})
    if unknown or not isinstance(entries, list):
        raise ValueError(f"{path}: expected only [[keys]] tables, found {unknown or 'keys'}")
    keys = []
    for position, entry in enumerate(entries):
        where = f"{path} keys[{position}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: must be a table with role and sha256")
        extra = sorted(set(entry) - {"role", "sha256", "name"})
        if extra:
            raise ValueError(f"{where}: unknown field(s) {', '.join(extra)}")
        if "role" not in entry or "sha256" not in entry:
            raise ValueError(f"{where}: needs role and sha256")
        name = str(entry.get("name") or f"{entry['role']}-{position + 1}")
        keys.append(ApiKey(_role(entry["role"], where), _digest(entry["sha256"], where), name))
    return tuple(keys)


def load_api_keys(path: Path | None, inline: str | None) -> tuple[ApiKey, ...]:
    """All configured keys (file first); ValueError naming the source on a bad entry."""
    keys: list[ApiKey] = []
    if path is not None:
        keys.extend(read_keys_file(path))
    if inline:
        keys.extend(parse_inline_keys(inline))
    seen: set[str] = set()
    for key in keys:
        if key.sha256 in seen:
            raise ValueError(f"API key {key.name!r}: the same key is configured twice")
        seen.add(key.sha256)
    return tuple(keys)


class KeyRing:
    """Finds the stored key matching a presented token, in constant time per stored key."""

    def __init__(self, keys: tuple[ApiKey, ...]) -> None:
        self._keys = keys
        self._digests = tuple(bytes.fromhex(k.sha256) for k in keys)

    @property
    def empty(self) -> bool:
        return not self._keys

    def find(self, token: str) -> ApiKey | None:
        if not token or len(token) > MAX_KEY_LENGTH:
            return None
        presented = hashlib.sha256(token.encode()).digest()
        match: ApiKey | None = None
        for key, digest in zip(self._keys, self._digests, strict=True):
            if hmac.compare_digest(presented, digest):  # every key is compared, no early exit
                match = key
        return match


_NAME: Final = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def key_file_entry(role: Role, token: str, name: str) -> str:
    """The TOML lines that store ``token`` (hashed) for ``role``."""
    if not _NAME.match(name):
        raise ValueError(f"key name {name!r}: use 1-64 letters, digits, '_', '.', '-'")
    return f'\n[[keys]]\nname = "{name}"\nrole = "{role.value}"\nsha256 = "{hash_key(token)}"\n'


__all__ = [
    "ROLE_PERMISSIONS",
    "ApiKey",
    "KeyRing",
    "Permission",
    "Role",
    "hash_key",
    "key_file_entry",
    "load_api_keys",
    "new_key",
    "parse_inline_keys",
    "read_keys_file",
]
