"""The retry policy: which failures are worth another attempt, and how long to wait between attempts."""

from __future__ import annotations

from collections.abc import Callable

import tenacity

from .errors import ArchivistError

_THROTTLING_CODES = frozenset(
    {
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
    response = getattr(exc, "response", None)  # botocore.exceptions.ClientError
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return code in _THROTTLING_CODES or status >= 500 or status == 0
    if isinstance(exc.__cause__, ArchivistError | PermissionError):
        return False
    return isinstance(exc, Exception)


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
