"""The gateway's one exception tree.

Every failure a client can see is a ``GatewayError``; each class fixes the HTTP status and
the OpenAI error ``type``/``code`` it is rendered with, so the status table lives here and
nowhere else::

    GatewayError                      (500 api_error: a bug; never leaks a trace)
    ├── InvalidRequestError           400 invalid_request_error (``param`` names the field)
    │   └── PayloadTooLargeError      413 invalid_request_error / request_too_large
    ├── AuthenticationError           401 authentication_error
    ├── NotFoundError                 404 invalid_request_error / model_not_found
    ├── RateLimitError                429 rate_limit_error (``retry_after`` -> Retry-After)
    ├── UpstreamError                 502 upstream_error: provider error or garbage
    │   ├── UpstreamAuthError         502: the gateway's provider key was rejected
    │   ├── UpstreamClientError       the provider's own 4xx status: the request's fault
    │   └── UpstreamTimeoutError      504 timeout
    └── ServiceUnavailableError       503 service_unavailable: nothing configured or usable

``ConfigError`` is separate: it is raised at start-up, never while serving.

Foreign exceptions (aiohttp, orjson, tomllib) are translated where they are caught with
``raise ... from exc``; ``retryable`` tells the executor whether another target may help.
"""

from __future__ import annotations

from typing import Any

import orjson


class ConfigError(Exception):
    """A configuration problem: names the key and the problem."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


class GatewayError(Exception):
    status: int = 500
    type: str = "api_error"
    code: str | None = "internal_error"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r}, {self.message!r})"


class InvalidRequestError(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class PayloadTooLargeError(InvalidRequestError):
    status = 413
    code = "request_too_large"


class AuthenticationError(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class NotFoundError(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class RateLimitError(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UpstreamError(GatewayError):
    """The provider failed: another target may succeed."""

    status = 502
    type = "upstream_error"
    code = "bad_gateway"
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        upstream_status: int | None = None,
        retry_after_s: float | None = None,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code, status=status)
        self.provider = provider
        self.upstream_status = upstream_status
        self.retry_after_s = retry_after_s


class UpstreamAuthError(UpstreamError):
    code = "provider_auth_failed"


class UpstreamClientError(UpstreamError):
    """The provider refused the request itself (400/404/422): the client's fault, relayed."""

    type = "invalid_request_error"
    code = "invalid_request"
    retryable = False


class UpstreamTimeoutError(UpstreamError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"


class ServiceUnavailableError(GatewayError):
    status = 503
    type = "service_unavailable"
    code = "no_provider_available"
    retryable = True
