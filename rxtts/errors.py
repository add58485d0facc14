"""Exception hierarchy, and the one place that maps wire errors to it.

Every wire failure (error frame, close code, rejected upgrade) becomes the most specific
class below (PROTOCOL 9), classified by ``error_code`` first and ``code`` second, never
by type-name strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum


class CloseCode(IntEnum):
    """WebSocket close codes of PROTOCOL 9."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    ABNORMAL = 1006
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    GENERIC_FAILURE = 4000
    UNAUTHORIZED = 4001
    INSUFFICIENT_CREDITS = 4003
    RATE_LIMITED = 4029
    MODEL_UNAVAILABLE = 4500


class RxTtsError(Exception):
    """Base of every rxtts error; carries the wire details when there are any."""

    default_status: int | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: str | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
        context_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status if status is not None else self.default_status
        self.error_code = error_code
        self.retry_after = retry_after
        self.request_id = request_id
        self.context_id = context_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, error_code={self.error_code!r})"


class AuthenticationError(RxTtsError):
    """The API key is missing or wrong (401/403, close 4001)."""

    default_status = 401


class InsufficientCreditsError(RxTtsError):
    """The account has no credits left (402, close 4003)."""

    default_status = 402


class RateLimitError(RxTtsError):
    """Too many requests; see ``retry_after`` (429, close 4029)."""

    default_status = 429


class TooManyContextsError(RateLimitError):
    """A 21st context was refused (``TOO_MANY_CONTEXTS``); the socket stays open."""


class ValidationError(RxTtsError, ValueError):
    """A request or setting was invalid (400, ``VALIDATION_ERROR``)."""

    default_status = 400


class MissingVoiceError(ValidationError):
    """No voice was given for text that needs one (``MISSING_VOICE_ID``)."""


class NotFoundError(RxTtsError):
    """The voice, model or resource does not exist (404)."""

    default_status = 404


class ConnectionClosedError(RxTtsError):
    """The socket closed or failed before the turn or request finished."""


class ModelUnavailableError(ConnectionClosedError):
    """The model is temporarily unavailable (503, close 4500)."""

    default_status = 503


class ServerRestartingError(ConnectionClosedError):
    """The server is restarting or draining (close 1012/1013); retry after ~1 s."""

    def __init__(self, message: str = "server restarting", **kw: object) -> None:
        kw.setdefault("retry_after", 1.0)
        super().__init__(message, **kw)  # type: ignore[arg-type]


class ServerError(RxTtsError):
    """Any other error the server reported (``INTERNAL_ERROR``, ``EMPTY_AUDIO``, ...)."""


class ProtocolError(RxTtsError):
    """A frame that does not follow PROTOCOL.md (bad JSON, unknown key, wrong type)."""

    default_status = 400


class LocalProtocolError(ProtocolError):
    """This side tried an illegal transition of its own state machine."""


class RemoteProtocolError(ProtocolError):
    """The peer sent a frame its state does not allow."""


_BY_ERROR_CODE: Mapping[str, type[RxTtsError]] = {
    "UNAUTHORIZED": AuthenticationError,
    "INSUFFICIENT_CREDITS": InsufficientCreditsError,
    "RATE_LIMITED": RateLimitError,
    "TOO_MANY_CONTEXTS": TooManyContextsError,
    "VALIDATION_ERROR": ValidationError,
    "PROTOCOL_ERROR": ProtocolError,
    "MISSING_VOICE_ID": MissingVoiceError,
    "MODEL_UNAVAILABLE": ModelUnavailableError,
    "NOT_FOUND": NotFoundError,
}

_BY_STATUS: Mapping[int, type[RxTtsError]] = {
    401: AuthenticationError,
    403: AuthenticationError,
    402: InsufficientCreditsError,
    429: RateLimitError,
    400: ValidationError,
    503: ModelUnavailableError,
    404: NotFoundError,
}

_BY_CLOSE: Mapping[int, tuple[type[RxTtsError], str]] = {
    CloseCode.UNAUTHORIZED: (AuthenticationError, "authentication failed"),
    CloseCode.INSUFFICIENT_CREDITS: (InsufficientCreditsError, "insufficient credits"),
    CloseCode.RATE_LIMITED: (RateLimitError, "rate limited"),
    CloseCode.MODEL_UNAVAILABLE: (ModelUnavailableError, "model temporarily unavailable"),
    CloseCode.SERVICE_RESTART: (ServerRestartingError, "server restarting"),
    CloseCode.TRY_AGAIN_LATER: (ServerRestartingError, "server draining, try again later"),
}


def classify(
    message: str,
    *,
    error_code: str | None = None,
    status: int | None = None,
    retry_after: float | None = None,
    request_id: str | None = None,
    context_id: str | None = None,
) -> RxTtsError:
    """The most specific error for an ``error_code``/status pair (PROTOCOL 9 order)."""
    cls = _BY_ERROR_CODE.get(error_code or "") or _BY_STATUS.get(status or 0) or ServerError
    return cls(
        message,
        status=status,
        error_code=error_code,
        retry_after=retry_after,
        request_id=request_id,
        context_id=context_id,
    )


def error_from_close(code: int | None, reason: str = "") -> RxTtsError | None:
    """The error a close code means mid-turn, or ``None`` for a normal close (PROTOCOL 9)."""
    if code in (CloseCode.NORMAL, CloseCode.GOING_AWAY):
        return None
    if code is not None and code in _BY_CLOSE:
        cls, text = _BY_CLOSE[code]
        return cls(f"{text}: {reason}" if reason else text, status=None)
    detail = f"connection closed (code {code})" + (f": {reason}" if reason else "")
    return ConnectionClosedError(detail)


def error_from_http(status: int, headers: Mapping[str, str] | None = None, body: str = "") -> RxTtsError:
    """The error a rejected upgrade or REST call means (PROTOCOL 9, 'Rejected upgrade')."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    retry = headers.get("retry-after")
    return classify(
        body.strip() or f"HTTP {status}",
        status=status,
        retry_after=float(retry) if retry and retry.replace(".", "", 1).isdigit() else None,
        request_id=headers.get("x-request-id"),
    )


__all__ = [
    "AuthenticationError",
    "CloseCode",
    "ConnectionClosedError",
    "InsufficientCreditsError",
    "LocalProtocolError",
    "MissingVoiceError",
    "ModelUnavailableError",
    "NotFoundError",
    "ProtocolError",
    "RateLimitError",
    "RemoteProtocolError",
    "RxTtsError",
    "ServerError",
    "ServerRestartingError",
    "TooManyContextsError",
    "ValidationError",
    "classify",
    "error_from_close",
    "error_from_http",
]
