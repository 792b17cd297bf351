"""Cache keys: one digest of everything in a request that can change the answer.

``cache_key`` hashes a canonical form of the request: the key version, the endpoint, the
tenant scope, the resolved model and the body minus the few fields that cannot change the
output (``EXCLUDED_FIELDS``). Everything else counts, unknown fields included: a field the
gateway does not know may still steer the upstream, and a needless miss is cheap while a
wrong hit serves another request's answer.

Canonical means: object keys sorted at every depth (``orjson.OPT_SORT_KEYS``), a top-level
``null`` dropped (OpenAI reads it as "use the default", the same as absent), an integral
float spelled as an int at the top level and in ``logit_bias`` (``temperature: 1`` and
``1.0`` are the same request), and ``stop: "x"`` spelled ``["x"]``. Numbers deeper inside
(a tool's JSON schema, say) are left as sent: walking those on every request would cost
more than the rare miss it saves.

The whole form is one JSON array ``[KEY_VERSION, endpoint, scope, model, body]``, so no
part can run into the next (no separator to smuggle into a model name) and a shared key
(``scope`` null) never equals any tenant's. Bump ``KEY_VERSION`` whenever the canonical
form changes: old entries then simply stop matching and age out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import orjson

KEY_VERSION = "k1"
DIGEST_BYTES = 16  # blake2b-128: 32 hex characters, collision odds nil at cache sizes

# Fields that cannot change the generated output, and so never split the cache:
EXCLUDED_FIELDS = frozenset(
    {
        # Transport only: a streamed request is answered from a whole entry and the other
        # way round (INTERFACE.md §5); the gateway itself renders chunks and usage.
        "stream",
        "stream_options",
        # End-user id for the provider's abuse monitoring; not an input to the model.
        "user",
        # Opaque tags the provider stores alongside the completion (and ``store`` asks it
        # to keep one); neither is shown to the model.
        "metadata",
        "store",
        # Successor of ``user`` for abuse monitoring; not an input to the model.
        "safety_identifier",
        # A routing hint for the provider's own prompt cache: changes cost and latency,
        # never tokens.
        "prompt_cache_key",
        # Which capacity pool serves the request (latency, price), not what it says.
        "service_tier",
        # Replaced by the resolved ``model`` argument: two aliases of one route share.
        "model",
    }
)

_SAFE_INT = 2**53  # past this an integral float cannot round-trip through an int exactly


def _number(value: Any) -> Any:
    if type(value) is float and value.is_integer() and -_SAFE_INT <= value <= _SAFE_INT:
        return int(value)
    return value


def cache_key(endpoint: str, body: Mapping[str, Any], model: str, scope: str | None) -> str:
    """The hex digest naming the cached answer to ``body`` sent to ``endpoint``.

    ``model`` is the resolved route/model name and replaces ``body["model"]``; ``scope``
    is the tenant (the client key's id), or None when the cache is shared by all tenants.
    """
    return key_for(endpoint, canonical_body(body), model, scope)


def canonical_body(body: Mapping[str, Any]) -> bytes:
    """The canonical JSON of the fields of ``body`` that can change the answer: the part of
    a key that depends on the body alone (``known.py`` keeps it for repeated bodies)."""
    canonical: dict[str, Any] = {}
    for name, value in body.items():
        if value is None or name in EXCLUDED_FIELDS:
            continue
        if type(value) is float:
            value = _number(value)
        elif name == "stop" and type(value) is str:
            value = [value]
        elif name == "logit_bias" and type(value) is dict:
            value = {token: _number(bias) for token, bias in value.items()}
        canonical[name] = value
    try:
        return orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        # orjson refuses ints past 64 bits and non-str keys, which a parsed body never
        # holds but a hand-built Mapping might; the stdlib spells them, more slowly (and
        # after a byte no JSON text starts with, so never as some other body's form).
        return b"\x00" + json.dumps(canonical, sort_keys=True, default=repr).encode()


def key_for(endpoint: str, canonical: bytes, model: str, scope: str | None) -> str:
    """The key of a body whose ``canonical_body`` is ``canonical``.

    The form hashed is the JSON array ``[KEY_VERSION, endpoint, scope, model, body]``,
    spliced from the dumped head and the canonical body."""
    head = orjson.dumps([KEY_VERSION, endpoint, scope, model])
    form = b"".join((head[:-1], b",", canonical, b"]"))
    return hashlib.blake2b(form, digest_size=DIGEST_BYTES).hexdigest()
