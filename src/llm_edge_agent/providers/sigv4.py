"""AWS credentials and Signature Version 4 request signing, done by ``botocore``.

The crypto is botocore's (``SigV4Auth``); this module only feeds it a request and a time.
``SigV4Auth.add_auth`` reads the wall clock itself (``botocore.compat.get_current_datetime``,
imported into ``botocore.auth``), which a pure translator must not do. So instead of
``add_auth`` we run its steps ourselves with ``request.context["timestamp"]`` set from the
injected clock: every step after the clock read takes the time from that context key
(``scope``, ``string_to_sign``, ``signature`` and the ``X-Amz-Date`` header all read it).
botocore is imported lazily, on the first signature, so importing the gateway stays cheap.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

SIGV4_TIMESTAMP: Final = "%Y%m%dT%H%M%SZ"  # botocore.auth.SIGV4_TIMESTAMP

ENV_ACCESS_KEY_ID: Final = "AWS_ACCESS_KEY_ID"
ENV_SECRET_ACCESS_KEY: Final = "AWS_SECRET_ACCESS_KEY"
ENV_SESSION_TOKEN: Final = "AWS_SESSION_TOKEN"


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    """Static AWS credentials. The secret and the session token never appear in a repr."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AwsCredentials | None:
        """From the standard AWS variables; None unless both key id and secret are set."""
        key_id = env.get(ENV_ACCESS_KEY_ID, "").strip()
        secret = env.get(ENV_SECRET_ACCESS_KEY, "").strip()
        if not key_id or not secret:
            return None
        token = env.get(ENV_SESSION_TOKEN, "").strip() or None
        return cls(key_id, secret, token)


def _botocore(module: str) -> Any:
    # importlib keeps mypy --strict clean whether or not botocore stubs are installed.
    return importlib.import_module(f"botocore.{module}")


def sign_request(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: AwsCredentials,
    region: str,
    service: str,
    now: dt.datetime,
) -> dict[str, str]:
    """The headers to send: ``headers`` plus ``authorization``, ``x-amz-date`` and, with a
    session token, ``x-amz-security-token`` (all names lower-case).

    ``url`` must be exactly what goes on the wire (path already percent-encoded): botocore
    encodes the path once more for the canonical request, as SigV4 wants for every service
    but S3.
    """
    awsrequest = _botocore("awsrequest")
    auth = _botocore("auth")
    boto_credentials = _botocore("credentials").Credentials(
        credentials.access_key_id, credentials.secret_access_key, credentials.session_token
    )
    request = awsrequest.AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    signer = auth.SigV4Auth(boto_credentials, service, region)
    request.context["timestamp"] = _utc(now).strftime(SIGV4_TIMESTAMP)
    # SigV4Auth.add_auth minus its clock read (see the module docstring).
    signer._modify_request_before_signing(request)
    canonical = signer.canonical_request(request)
    string_to_sign = signer.string_to_sign(request, canonical)
    signature = signer.signature(string_to_sign, request)
    signer._inject_signature_to_request(request, signature)
    return {str(name).lower(): str(value) for name, value in request.headers.items()}


def _utc(now: dt.datetime) -> dt.datetime:
    """A naive time is taken as UTC; an aware one is converted to it."""
    return now if now.tzinfo is None else now.astimezone(dt.UTC)
