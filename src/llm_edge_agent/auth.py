"""Client keys: ``Authorization: Bearer KEY`` or ``x-api-key: KEY`` (INTERFACE §6).

Keys are stored as SHA-256 digests (config entries may already be ``sha256:<hex>``);
a presented key is hashed and compared with ``hmac.compare_digest`` against every
digest, so the time taken does not depend on how much of a key matched.
"""

from __future__ import annotations

import hashlib
import hmac
import string
from collections.abc import Iterable, Mapping

from .errors import AuthenticationError, ConfigError

SHA256_PREFIX = "sha256:"
# Keys that authenticated lately, so a returning client skips the SHA-256 (see ``_known``).
KNOWN_KEYS_MAX = 4096


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_id(digest: bytes) -> str:
    """A short, non-secret name for a key: safe in logs and cache scopes."""
    return digest[:8].hex()


def entry_digest(where: str, entry: str) -> bytes:
    """The SHA-256 digest of a configured key: the key itself, or ``sha256:<64 hex>``.
    ``ConfigError`` (naming ``where``) for a bad digest or an empty entry (often an unset
    ``${VAR}``, which must not silently open the gateway)."""
    if entry.startswith(SHA256_PREFIX):
        text = entry[len(SHA256_PREFIX) :]
        if text and not all(c in string.hexdigits for c in text):
            raise ConfigError(where, "invalid sha256 hex digest")
        if len(text) != 64:
            raise ConfigError(where, "sha256 digest must be 64 hex characters")
        return bytes.fromhex(text)
    if not entry.strip():
        raise ConfigError(where, "is empty")
    return key_digest(entry)


def presented_key(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


class Authenticator:
    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = tuple(
            entry_digest(f"auth.api_keys[{i}]", entry) for i, entry in enumerate(keys)
        )
        # Presented key -> tenant id, for keys that were accepted: hashing a key and
        # comparing it with every digest costs more than the rest of a cache hit's
        # bookkeeping. Only accepted keys get in (a flood of wrong keys hashes each time and
        # adds nothing), and the dict is emptied when full. A lookup compares a probe with
        # a stored key only when their keyed (SipHash) str hashes are equal, which a client
        # cannot arrange, so its timing says nothing about other clients' keys.
        self._known: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Authenticator(keys={len(self._digests)})"

    @property
    def open(self) -> bool:
        return not self._digests

    def authenticate(self, headers: Mapping[str, str]) -> str | None:
        """The caller's tenant id (a digest prefix), None for an open gateway without a key."""
        key = presented_key(headers)
        if key is None:
            if not self._digests:
                return None
            raise AuthenticationError(
                "missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
            )
        tenant = self._known.get(key)
        if tenant is not None:
            return tenant
        digest = key_digest(key)
        if self._digests:
            matched = False
            for known in self._digests:
                matched |= hmac.compare_digest(digest, known)
            if not matched:
                raise AuthenticationError("invalid API key")
        tenant = key_id(digest)
        if len(self._known) >= KNOWN_KEYS_MAX:
            self._known.clear()
        self._known[key] = tenant
        return tenant
