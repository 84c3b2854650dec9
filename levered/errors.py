"""The domain error tree, defined once and translated at each edge.

Each error has a stable ``code`` (what clients branch on) and an HTTP ``status``; the server
turns them into the error envelope, the CLI into exit codes, the dashboard into a status line.
"""

from __future__ import annotations

from typing import Any, ClassVar


class LeveredError(Exception):
    """Base of every error Levered raises on purpose."""

    code: str = "internal_error"
    """Stable machine-readable code: a class default that one raise may override."""
    status: ClassVar[int] = 500

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code


class ConfigurationError(LeveredError):
    """The process cannot start as configured (bad setting, unusable data directory)."""

    code = "configuration_error"


class ValidationError(LeveredError):
    """The input is malformed; ``details`` lists each problem with its JSON path."""

    code = "validation_error"
    status = 400

    @classmethod
    def at(cls, path: str, message: str) -> ValidationError:
        """One problem of the field at JSON ``path`` (``$.credentials.port``), said with it."""
        return cls(
            f"{path.removeprefix('$.')}: {message}", details=[{"path": path, "message": message}]
        )


EMPTY_BODY = "the request body is empty; this endpoint takes a JSON object"
"""The message of a 400 for a request sent without a body (every JSON-body endpoint)."""


class AuthenticationError(LeveredError):
    code = "unauthorized"
    status = 401


class PermissionDenied(LeveredError):
    code = "forbidden"
    status = 403


class NotFound(LeveredError):
    code = "not_found"
    status = 404


class Conflict(LeveredError):
    """The request is well formed but the resource's state forbids it."""

    code = "conflict"
    status = 409


class NotLive(Conflict):
    """Serving a draft or archived optimization: the client shows its own fallback."""

    code = "not_live"


class PayloadTooLarge(LeveredError):
    code = "payload_too_large"
    status = 413


class RateLimited(LeveredError):
    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(LeveredError):
    """A transient failure (database down, serialization failure): retry later."""

    code = "unavailable"
    status = 503

    def __init__(
        self, message: str, *, retry_after: int = 1, details: Any = None, code: str | None = None
    ) -> None:
        super().__init__(message, details=details, code=code)
        self.retry_after = retry_after


class MigrationError(LeveredError):
    """The schema cannot be brought up to date safely (e.g. an applied file was edited)."""

    code = "migration_error"
