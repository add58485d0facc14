"""Tests for rxtts.errors: the PROTOCOL 9 mapping of error frames, close codes and HTTP."""

from __future__ import annotations

import pytest

from rxtts.errors import (
    AuthenticationError,
    CloseCode,
    ConnectionClosedError,
    InsufficientCreditsError,
    LocalProtocolError,
    MissingVoiceError,
    ModelUnavailableError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    RemoteProtocolError,
    RxTtsError,
    ServerError,
    ServerRestartingError,
    TooManyContextsError,
    ValidationError,
    classify,
    error_from_close,
    error_from_http,
)

# -- classify(): error_code first, then status ---------------------------------------------


@pytest.mark.parametrize(
    ("error_code", "cls"),
    [
        ("UNAUTHORIZED", AuthenticationError),
        ("INSUFFICIENT_CREDITS", InsufficientCreditsError),
        ("RATE_LIMITED", RateLimitError),
        ("TOO_MANY_CONTEXTS", TooManyContextsError),
        ("VALIDATION_ERROR", ValidationError),
        ("MISSING_VOICE_ID", MissingVoiceError),
        ("MODEL_UNAVAILABLE", ModelUnavailableError),
        ("NOT_FOUND", NotFoundError),
        ("PROTOCOL_ERROR", ProtocolError),
        ("INTERNAL_ERROR", ServerError),
        ("EMPTY_AUDIO", ServerError),
        ("SOMETHING_NEW", ServerError),
    ],
)
def test_classify_by_error_code(error_code: str, cls: type[RxTtsError]) -> None:
    err = classify("boom", error_code=error_code)
    assert type(err) is cls
    assert err.error_code == error_code and err.message == "boom" and str(err) == "boom"


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, AuthenticationError),
        (403, AuthenticationError),
        (402, InsufficientCreditsError),
        (429, RateLimitError),
        (400, ValidationError),
        (503, ModelUnavailableError),
        (404, NotFoundError),
        (500, ServerError),
        (None, ServerError),
    ],
)
def test_classify_by_status(status: int | None, cls: type[RxTtsError]) -> None:
    err = classify("boom", status=status)
    assert type(err) is cls


@pytest.mark.parametrize(
    ("error_code", "status", "cls"),
    [
        ("VALIDATION_ERROR", 429, ValidationError),
        ("TOO_MANY_CONTEXTS", 400, TooManyContextsError),
        ("UNAUTHORIZED", 500, AuthenticationError),
        ("INTERNAL_ERROR", 402, InsufficientCreditsError),  # unknown code: status decides
        ("EMPTY_AUDIO", 404, NotFoundError),
        (None, 401, AuthenticationError),
    ],
)
def test_error_code_wins_over_status(error_code: str | None, status: int, cls: type[RxTtsError]) -> None:
    assert type(classify("x", error_code=error_code, status=status)) is cls


def test_hierarchy_matches_protocol_9() -> None:
    assert issubclass(TooManyContextsError, RateLimitError)
    assert issubclass(MissingVoiceError, ValidationError)
    assert issubclass(ValidationError, ValueError)  # also a plain ValueError for callers
    assert issubclass(ModelUnavailableError, ConnectionClosedError)
    assert issubclass(ServerRestartingError, ConnectionClosedError)
    assert issubclass(LocalProtocolError, ProtocolError)
    assert issubclass(RemoteProtocolError, ProtocolError)
    for cls in (AuthenticationError, ServerError, ProtocolError, ConnectionClosedError):
        assert issubclass(cls, RxTtsError)


def test_classify_copies_wire_details() -> None:
    err = classify(
        "Too many concurrent contexts",
        error_code="TOO_MANY_CONTEXTS",
        status=429,
        retry_after=5,
        request_id="req-1",
        context_id="c20",
    )
    assert isinstance(err, TooManyContextsError) and isinstance(err, RateLimitError)
    assert (err.status, err.retry_after, err.request_id, err.context_id) == (429, 5, "req-1", "c20")


@pytest.mark.parametrize(
    ("error_code", "status"),
    [
        ("UNAUTHORIZED", 401),
        ("INSUFFICIENT_CREDITS", 402),
        ("RATE_LIMITED", 429),
        ("TOO_MANY_CONTEXTS", 429),
        ("VALIDATION_ERROR", 400),
        ("MISSING_VOICE_ID", 400),
        ("NOT_FOUND", 404),
        ("MODEL_UNAVAILABLE", 503),
    ],
)
def test_class_default_statuses_match(error_code: str, status: int) -> None:
    err = classify("x", error_code=error_code)
    assert err.status == status
    assert err.retry_after is None and err.request_id is None and err.context_id is None


def test_explicit_status_wins_over_class_default() -> None:
    assert classify("x", error_code="VALIDATION_ERROR", status=422).status == 422


def test_server_error_has_no_default_status() -> None:
    assert classify("x").status is None


def test_repr_names_class_and_code() -> None:
    text = repr(classify("voice_id is required", error_code="MISSING_VOICE_ID"))
    assert text.startswith("MissingVoiceError(") and "MISSING_VOICE_ID" in text


# -- error_from_close (PROTOCOL 9 close table) ------------------------------------------------


@pytest.mark.parametrize("code", [1000, 1001])
def test_normal_closes_are_not_errors(code: int) -> None:
    assert error_from_close(code) is None
    assert error_from_close(code, "bye") is None


@pytest.mark.parametrize("code", [1012, 1013])
def test_restart_closes_are_retryable(code: int) -> None:
    err = error_from_close(code)
    assert type(err) is ServerRestartingError
    assert isinstance(err, ConnectionClosedError)
    assert err.retry_after == 1


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (4001, AuthenticationError),
        (4003, InsufficientCreditsError),
        (4029, RateLimitError),
        (4500, ModelUnavailableError),
    ],
)
def test_application_close_codes(code: int, cls: type[RxTtsError]) -> None:
    err = error_from_close(code, "why")
    assert type(err) is cls
    assert "why" in err.message  # reason appended (PROTOCOL 9, verified for 4001)


@pytest.mark.parametrize("code", [1006, 1011, 4000, 1002, 4999, None])
def test_other_closes_are_generic_connection_errors(code: int | None) -> None:
    err = error_from_close(code, "gone")
    assert type(err) is ConnectionClosedError
    assert str(code) in err.message and "gone" in err.message


def test_close_code_enum_values() -> None:
    codes = {c.name: int(c) for c in CloseCode}
    assert codes["SERVICE_RESTART"] == 1012 and codes["TRY_AGAIN_LATER"] == 1013
    assert codes["RATE_LIMITED"] == 4029 and codes["MODEL_UNAVAILABLE"] == 4500
    assert type(error_from_close(CloseCode.UNAUTHORIZED)) is AuthenticationError


def test_server_restarting_error_default_construction() -> None:
    err = ServerRestartingError()
    assert err.retry_after == 1.0 and "restart" in err.message
    assert ServerRestartingError("x", retry_after=3).retry_after == 3


# -- error_from_http (PROTOCOL 9 'Rejected upgrade') ---------------------------------------------


def test_http_403_is_authentication_error_with_request_id() -> None:
    err = error_from_http(403, {"x-request-id": "abc-123"})
    assert isinstance(err, AuthenticationError)
    assert err.request_id == "abc-123"


def test_http_429_retry_after_header() -> None:
    err = error_from_http(429, {"Retry-After": "7", "X-Request-ID": "r9"})
    assert type(err) is RateLimitError
    assert err.retry_after == 7 and err.request_id == "r9"


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, AuthenticationError),
        (402, InsufficientCreditsError),
        (400, ValidationError),
        (404, NotFoundError),
        (503, ModelUnavailableError),
        (500, ServerError),
    ],
)
def test_http_statuses(status: int, cls: type[RxTtsError]) -> None:
    err = error_from_http(status)
    assert type(err) is cls
    assert err.status == status and str(status) in err.message


def test_http_body_becomes_the_message_and_bad_retry_after_is_ignored() -> None:
    err = error_from_http(429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, "  slow down \n")
    assert err.message == "slow down"
    assert err.retry_after is None
    assert error_from_http(429, {"retry-after": "1.5"}).retry_after == 1.5
