"""Errors that carry their HTTP status, rendered as RFC 9457 problem+json.

    JisrError                 500  (never raised for bad input)
    ├── BadRequest            400
    ├── Unauthorized          401  (with WWW-Authenticate)
    ├── Forbidden             403  (carries the refusing `rule`)
    │   └── EntitlementRefused  403  (carries the decision's reasons)
    ├── NotFound              404  (the same body whether missing or invisible)
    ├── Conflict              409
    ├── PayloadTooLarge       413
    ├── Unprocessable         422  (a payload that parsed but makes no sense)
    └── ServiceUnavailable    503  (with Retry-After; the database connection was lost)

Every problem has a stable `type` URI (`urn:jisr:problem:<slug>`), a `title` in
the caller's language, and the request id, so a user can quote it to support.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from asyncpg.exceptions import PostgresError  # type: ignore[import-untyped]
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared import audit
from shared.i18n import negotiate, translate
from shared.logs import request_id_var

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("jisr.problems")

__all__ = [
    "PROBLEM_JSON",
    "BadRequest",
    "Conflict",
    "EntitlementRefused",
    "Forbidden",
    "JisrError",
    "NotFound",
    "PayloadTooLarge",
    "ServiceUnavailable",
    "Unauthorized",
    "Unprocessable",
    "install",
    "problem_response",
]


class JisrError(Exception):
    status = 500
    slug = "internal"
    headers: Mapping[str, str] = MappingProxyType({})
    """Response headers a kind of problem always carries (`Retry-After`, say)."""

    def __init__(
        self, detail: str | None = None, *, refusal: audit.Refusal | None = None, **extra: Any
    ) -> None:
        super().__init__(detail or self.slug)
        self.detail = detail
        self.extra = extra
        self.refusal = refusal


class BadRequest(JisrError):
    status, slug = 400, "bad_request"


class Unauthorized(JisrError):
    status, slug = 401, "unauthorized"


class InvalidToken(Unauthorized):
    slug = "invalid_token"


class InvalidCredentials(Unauthorized):
    slug = "invalid_credentials"


class Forbidden(JisrError):
    status, slug = 403, "forbidden"

    def __init__(
        self,
        detail: str | None = None,
        *,
        rule: str,
        refusal: audit.Refusal | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail, refusal=refusal, rule=rule, **extra)


class EntitlementRefused(Forbidden):
    slug = "entitlement_refused"


class NotFound(JisrError):
    status, slug = 404, "not_found"


class Conflict(JisrError):
    status, slug = 409, "conflict"


class PayloadTooLarge(JisrError):
    status, slug = 413, "payload_too_large"


class Unprocessable(JisrError):
    status, slug = 422, "validation"


class ServiceUnavailable(JisrError):
    status, slug = 503, "service_unavailable"


RETRY_AFTER_S = 2
"""Seconds a client should wait after losing the database (a restart takes about one)."""


def connection_lost(exc: BaseException) -> bool:
    """True when `exc` (or what it wraps) says the database went away, not that a query was wrong.

    PostgreSQL's SQLSTATE classes 08 (connection exception) and 57P (operator
    intervention: shutdown, cannot connect now), a connection SQLAlchemy
    invalidated, or a socket refused or reset while connecting.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionError):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        state = getattr(current, "sqlstate", None)
        if isinstance(current, PostgresError) and str(state).startswith(("08", "57P")):
            return True
        current = getattr(current, "orig", None) or current.__cause__
    return False


def out_of_range(exc: BaseException) -> bool:
    """True when `exc` (or what it wraps) says a number sent could not be bound to its column.

    An id or count beyond the column's integer type (PostgreSQL's INTEGER, SQLite's
    64 bits) fails in the driver, before any row is read or written: asyncpg and
    sqlite3 both raise OverflowError at the root, PostgreSQL itself SQLSTATE 22003.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OverflowError) or getattr(current, "sqlstate", None) == "22003":
            return True
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return False


def problem_response(
    request: Request,
    status: int,
    slug: str,
    detail: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    lang = negotiate(request.headers.get("accept-language"))
    body: dict[str, Any] = {
        "type": f"urn:jisr:problem:{slug.replace('_', '-')}",
        "title": translate(f"problem.{slug}", lang),
        "status": status,
        "instance": request.url.path,
        "request_id": request_id_var.get(),
    }
    if detail:
        body["detail"] = detail
    body.update(extra)
    sent = dict(headers or {})
    if status == 401:
        sent["WWW-Authenticate"] = "Bearer"
    if status == 503:
        sent["Retry-After"] = str(RETRY_AFTER_S)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=sent)


def _validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    cleaned = []
    for error in errors:
        cleaned.append(
            {
                "loc": [str(part) for part in error.get("loc", ())],
                "msg": str(error.get("msg", "")),
                "type": str(error.get("type", "")),
            }
        )
    return cleaned


def install(app: FastAPI) -> None:
    """Render every error the app can raise as problem+json."""

    async def jisr_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, JisrError)
        if exc.status >= 500:
            log.exception("internal error", exc_info=exc)
        if exc.refusal is not None:
            await audit.write_refusal(request.app.state.platform.database, exc.refusal)
        return problem_response(
            request, exc.status, exc.slug, exc.detail, headers=exc.headers, **exc.extra
        )

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(
            request,
            422,
            "validation",
            "the request does not match the schema",
            errors=_validation_errors(exc.errors()),
        )

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        slug = {
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            409: "conflict",
            413: "payload_too_large",
        }.get(exc.status_code, "bad_request" if exc.status_code < 500 else "internal")
        detail = exc.detail if isinstance(exc.detail, str) else None
        return problem_response(request, exc.status_code, slug, detail)

    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        """A lost database connection is a retryable 503, a number no column can hold a 422
        (nothing was read or written); any other database error stays a 500."""
        if out_of_range(exc):
            log.warning("number out of range: %s", type(exc).__name__)
            return problem_response(
                request, 422, "validation", "a number in the request is out of range"
            )
        if not connection_lost(exc):
            raise exc
        log.warning("database unavailable: %s", type(exc).__name__)
        return problem_response(
            request, 503, ServiceUnavailable.slug, "the database is unavailable; try again"
        )

    app.add_exception_handler(JisrError, jisr_error)
    for kind in (DBAPIError, PostgresError, ConnectionError, OverflowError):
        app.add_exception_handler(kind, database_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
