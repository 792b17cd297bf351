"""``llm_edge_agent.auth``: client keys, ``sha256:`` entries, tenant ids."""

from __future__ import annotations

import hashlib

import pytest

from llm_edge_agent.auth import (
    KNOWN_KEYS_MAX,
    Authenticator,
    key_digest,
    key_id,
    presented_key,
)
from llm_edge_agent.errors import AuthenticationError, ConfigError

KEY = "sk-edge-0123456789abcdef"
OTHER = "sk-edge-other-key-987654"


def sha256_entry(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def rejected(auth: Authenticator, headers: dict[str, str]) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as info:
        auth.authenticate(headers)
    assert info.value.status == 401
    assert info.value.type == "authentication_error"
    return info.value


# --------------------------------------------------------------------------- accepted


def test_bearer_key_is_accepted() -> None:
    assert Authenticator([KEY]).authenticate(bearer(KEY)) is not None


def test_x_api_key_is_accepted() -> None:
    assert Authenticator([KEY]).authenticate({"x-api-key": KEY}) is not None


def test_bearer_scheme_is_case_insensitive_and_whitespace_is_trimmed() -> None:
    auth = Authenticator([KEY])
    assert auth.authenticate({"authorization": f"bearer   {KEY}  "}) is not None
    assert auth.authenticate({"authorization": f"BEARER {KEY}"}) is not None
    assert auth.authenticate({"x-api-key": f"  {KEY} "}) is not None


def test_any_configured_key_is_accepted() -> None:
    auth = Authenticator([KEY, OTHER])
    assert auth.authenticate(bearer(KEY)) != auth.authenticate(bearer(OTHER))


def test_sha256_entry_accepts_the_plain_key() -> None:
    auth = Authenticator([sha256_entry(KEY)])
    assert auth.authenticate(bearer(KEY)) is not None
    assert auth.authenticate({"x-api-key": KEY}) is not None


def test_sha256_entry_hex_is_case_insensitive() -> None:
    entry = "sha256:" + hashlib.sha256(KEY.encode()).hexdigest().upper()
    assert Authenticator([entry]).authenticate(bearer(KEY)) is not None


def test_sha256_entry_does_not_accept_the_digest_itself_as_a_key() -> None:
    entry = sha256_entry(KEY)
    auth = Authenticator([entry])
    rejected(auth, bearer(entry))
    rejected(auth, bearer(entry.removeprefix("sha256:")))


def test_bearer_is_used_before_x_api_key() -> None:
    auth = Authenticator([KEY])
    assert auth.authenticate({"authorization": f"Bearer {KEY}", "x-api-key": "wrong"}) is not None
    rejected(auth, {"authorization": "Bearer wrong", "x-api-key": KEY})


def test_non_bearer_authorization_falls_back_to_x_api_key() -> None:
    auth = Authenticator([KEY])
    assert auth.authenticate({"authorization": "Basic dXNlcjpwYXNz", "x-api-key": KEY}) is not None


# --------------------------------------------------------------------------- rejected


def test_wrong_key_is_rejected() -> None:
    error = rejected(Authenticator([KEY]), bearer(OTHER))
    assert OTHER not in error.message
    assert KEY not in error.message


def test_key_prefix_or_extension_is_rejected() -> None:
    auth = Authenticator([KEY])
    rejected(auth, bearer(KEY[:-1]))
    rejected(auth, bearer(KEY + "0"))
    rejected(auth, bearer(KEY.upper()))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": ""},
        {"authorization": "Bearer"},
        {"authorization": "Bearer    "},
        {"authorization": f"Basic {KEY}"},
        {"authorization": KEY},
        {"x-api-key": ""},
        {"x-api-key": "   "},
    ],
)
def test_missing_key_is_rejected(headers: dict[str, str]) -> None:
    error = rejected(Authenticator([KEY]), headers)
    assert "missing" in error.message


def test_error_renders_with_the_invalid_api_key_code() -> None:
    error = rejected(Authenticator([KEY]), bearer(OTHER))
    assert error.to_dict()["error"]["code"] == "invalid_api_key"


# --------------------------------------------------------------------------- open mode


def test_no_keys_means_open_mode() -> None:
    assert Authenticator([]).open is True
    assert Authenticator([KEY]).open is False


def test_open_mode_without_a_key_has_no_tenant() -> None:
    assert Authenticator([]).authenticate({}) is None


def test_open_mode_with_a_key_returns_a_tenant_id() -> None:
    auth = Authenticator([])
    tenant = auth.authenticate(bearer(KEY))
    assert tenant is not None
    assert KEY not in tenant
    assert tenant == auth.authenticate({"x-api-key": KEY})
    assert tenant != auth.authenticate(bearer(OTHER))


@pytest.mark.parametrize("entry", ["", "   "])
def test_an_empty_entry_is_a_config_error_not_an_open_gateway(entry: str) -> None:
    # An unset ${VAR} in api_keys must not silently turn authentication off.
    with pytest.raises(ConfigError, match=r"auth\.api_keys\[0\]"):
        Authenticator([entry, KEY])


# --------------------------------------------------------------------------- tenant ids


def test_tenant_id_is_stable_across_instances_and_entry_forms() -> None:
    plain = Authenticator([KEY]).authenticate(bearer(KEY))
    hashed = Authenticator([sha256_entry(KEY)]).authenticate({"x-api-key": KEY})
    open_mode = Authenticator([]).authenticate(bearer(KEY))
    assert plain == hashed == open_mode
    assert plain == key_id(key_digest(KEY))


def test_tenant_id_does_not_contain_the_key_and_differs_per_key() -> None:
    auth = Authenticator([KEY, OTHER])
    first, second = auth.authenticate(bearer(KEY)), auth.authenticate(bearer(OTHER))
    assert first is not None and second is not None
    assert first != second
    for tenant in (first, second):
        assert KEY not in tenant and OTHER not in tenant
        assert len(tenant) == 16
        int(tenant, 16)  # hex


def test_tenant_id_reveals_only_a_digest_prefix() -> None:
    tenant = Authenticator([KEY]).authenticate(bearer(KEY))
    digest_hex = hashlib.sha256(KEY.encode()).hexdigest()
    assert tenant is not None
    assert digest_hex.startswith(tenant)
    assert len(tenant) < len(digest_hex)


def test_repr_shows_no_key_material() -> None:
    text = repr(Authenticator([KEY, sha256_entry(OTHER)]))
    assert KEY not in text
    assert hashlib.sha256(OTHER.encode()).hexdigest() not in text
    assert "2" in text


# --------------------------------------------------------------------------- known keys


def test_a_returning_key_gets_the_same_tenant_and_a_wrong_one_is_still_refused() -> None:
    auth = Authenticator([KEY])
    first = auth.authenticate(bearer(KEY))
    assert auth.authenticate(bearer(KEY)) == first == key_id(key_digest(KEY))
    assert auth.authenticate({"x-api-key": KEY}) == first
    for _ in range(2):  # a refusal is never remembered as an acceptance
        rejected(auth, bearer(OTHER))
    rejected(auth, bearer(KEY + "x"))


def test_wrong_keys_are_not_remembered() -> None:
    auth = Authenticator([KEY])
    for i in range(100):
        rejected(auth, bearer(f"{OTHER}-{i}"))
    assert auth._known == {}


def test_remembered_keys_are_bounded_and_still_authenticate_after_the_reset() -> None:
    auth = Authenticator([])  # open mode: any key is a tenant, so any key is remembered
    tenants = {auth.authenticate(bearer(f"k{i}")) for i in range(KNOWN_KEYS_MAX + 10)}
    assert len(tenants) == KNOWN_KEYS_MAX + 10
    assert len(auth._known) <= KNOWN_KEYS_MAX
    assert auth.authenticate(bearer("k0")) == key_id(key_digest("k0"))


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    "entry",
    [
        "sha256:not-hex",
        "sha256:",
        "sha256:abcd",
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 66,
    ],
)
def test_invalid_sha256_entry_is_a_config_error_naming_the_entry(entry: str) -> None:
    with pytest.raises(ConfigError) as info:
        Authenticator([KEY, entry])
    assert info.value.key == "auth.api_keys[1]"
    assert "sha256" in info.value.problem


# --------------------------------------------------------------------------- helpers


def test_presented_key_reads_bearer_then_x_api_key() -> None:
    assert presented_key(bearer(KEY)) == KEY
    assert presented_key({"x-api-key": KEY}) == KEY
    assert presented_key({}) is None
    assert presented_key({"authorization": "Token abc"}) is None
