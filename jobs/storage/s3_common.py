"""What the S3 adapter's modules share: the error codes they look for."""

from __future__ import annotations

from botocore.exceptions import ClientError

MISSING = {"404", "NoSuchKey", "NotFound"}
EXISTS = {"PreconditionFailed", "412"}


def code_of(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
