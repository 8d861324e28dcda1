"""The retry policy: which failures are worth another attempt, and how long to wait between attempts."""

from __future__ import annotations

from collections.abc import Callable

import tenacity

from .errors import ArchivistError

_RETRYABLE_CODES = frozenset(  # S3 4xx answers that mean "not now"
    {
        "ConditionalRequestConflict",  # 409: a conditional write raced another; S3 says to retry
        "OperationAborted",  # 409: a conflicting operation is in progress
        "Throttling",
        "ThrottlingException",
        "SlowDown",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
    }
)


def is_transient(exc: BaseException) -> bool:
    """Whether another attempt may succeed.

    Permanent: archivist's own errors (template, path, payload, encoding), permission errors, and S3 4xx
    answers other than throttling. Anything else a storage backend raises is taken as transient, because
    backends report lost connections with types of their own (smbprotocol raises ValueError and
    SMBException, s3fs OSError); a bounded number of retries costs little, a wrongly dropped retry costs a
    spooled event.
    """
    if isinstance(exc, ArchivistError | PermissionError):
        return False
    response = _s3_response(exc)
    if response is not None:
        code = response.get("Error", {}).get("Code")
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return code in _RETRYABLE_CODES or status >= 500 or status == 0
    if isinstance(exc.__cause__, ArchivistError | PermissionError):
        return False
    return isinstance(exc, Exception)


def _s3_response(exc: BaseException) -> dict | None:
    """The S3 answer behind ``exc``: botocore's ClientError carries it, and s3fs raises OSErrors from one."""
    cause: BaseException | None = exc
    while cause is not None:
        response = getattr(cause, "response", None)
        if isinstance(response, dict):
            return response
        cause = cause.__cause__
    return None


def retry_policy(
    max_retries: int,
    wait_min: float,
    wait_max: float,
    on_retry: Callable[[tenacity.RetryCallState], None] | None = None,
) -> tenacity.Retrying:
    """``max_retries`` further attempts after the first, with exponential backoff and jitter."""
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max_retries + 1),
        wait=tenacity.wait_exponential_jitter(multiplier=wait_min, max=wait_max, jitter=wait_min),
        retry=tenacity.retry_if_exception(is_transient),
        before_sleep=on_retry,
        reraise=True,
    )
