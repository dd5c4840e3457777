"""CloudTrail log files in S3, fetched for the SQS source when a message points at them.

`fetch_log_file` streams the object into a spooled temporary file (memory up to `spool_bytes`, disk
beyond), so a large log file never sits in memory whole; `documents_of_log_file` then detects gzip by its
magic bytes and cuts it into documents with the same splitter as `replay` (big files stream in chunks).
Both sizes are capped: the object as stored, and what it unzips to (a gzip bomb becomes Malformed).

Errors are `LogFileError` (an `InputError`) with `retryable`: a missing object, a missing bucket or
AccessDenied will not fix themselves by retrying soon; throttling, 5xx and network errors may. Either way
the message is retried, never deleted, and reaches the DLQ if it never succeeds.
"""

from __future__ import annotations

import gzip
import io
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import IO, Any, BinaryIO, Protocol, cast

from kvs_sentinel.aws import aws_client
from kvs_sentinel.envelopes import LogFileRef
from kvs_sentinel.events import Location
from kvs_sentinel.log_files import LogFileError
from kvs_sentinel.sources.files import WHOLE_FILE_LIMIT, FileItem, split_documents

MAX_OBJECT_BYTES = 512 * 1024 * 1024  # as stored (gzip): CloudTrail files are far smaller
MAX_UNZIPPED_BYTES = 4 * 1024 * 1024 * 1024
READ_CHUNK = 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_PERMANENT_CODES = frozenset(
    {
        "NoSuchKey",
        "NoSuchBucket",
        "NotFound",
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidObjectState",
        "InvalidBucketName",
        "KMS.DisabledException",
        "KMS.NotFoundException",
        "KMS.KMSInvalidStateException",
        "AccessDeniedException",
    }
)


class S3Getter(Protocol):
    """The one call we need from an S3 client (aiobotocore's, or a fake)."""

    async def get_object(self, **request: Any) -> Mapping[str, Any]: ...


def s3_client(region: str | None = None, attempts: int = 3) -> AbstractAsyncContextManager[S3Getter]:
    """An aiobotocore S3 client: standard credential chain and environment (`AWS_ENDPOINT_URL_S3`…).

    A bucket in another region is followed by botocore's region redirector."""
    client: AbstractAsyncContextManager[S3Getter] = aws_client(
        "s3",
        region=region or os.environ.get("AWS_REGION") or None,
        endpoint_url=None,
        timeout_seconds=10,
        read_timeout_seconds=60,
        attempts=attempts + 1,
    )
    return client


def log_file_location(ref: LogFileRef) -> Location:
    return Location(f"s3://{ref.bucket}/{ref.key}")


async def fetch_log_file(
    client: S3Getter,
    ref: LogFileRef,
    *,
    max_bytes: int = MAX_OBJECT_BYTES,
    spool_bytes: int = WHOLE_FILE_LIMIT,
) -> BinaryIO:
    """The object, read in chunks into a spooled temporary file positioned at its start.

    The caller closes it. Raises LogFileError.
    """
    from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

    name = f"s3://{ref.bucket}/{ref.key}"
    spool = cast(BinaryIO, tempfile.SpooledTemporaryFile(max_size=spool_bytes))  # noqa: SIM115
    try:
        response = await client.get_object(Bucket=ref.bucket, Key=ref.key)
        length = int(response.get("ContentLength") or 0)
        async with response["Body"] as body:
            if length > max_bytes:
                raise LogFileError(
                    f"{name}: {length} bytes, larger than the {max_bytes} byte limit", retryable=False
                )
            size = 0
            while chunk := await body.read(READ_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise LogFileError(f"{name}: larger than the {max_bytes} byte limit", retryable=False)
                spool.write(chunk)
    except ClientError as exc:
        spool.close()
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        permanent = code in _PERMANENT_CODES or status in (403, 404)
        raise LogFileError(
            f"{name}: {code}: {error.get('Message', '')}".rstrip(": "), retryable=not permanent
        ) from None
    except (BotoCoreError, OSError, TimeoutError) as exc:
        spool.close()
        raise LogFileError(f"{name}: {type(exc).__name__}: {exc}", retryable=True) from None
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


def documents_of_log_file(
    data: bytes | BinaryIO, location: Location, *, max_unzipped_bytes: int = MAX_UNZIPPED_BYTES
) -> Iterator[FileItem]:
    """Documents of one log file (gzip or plain, told by its magic bytes), as `replay` splits files.

    `data` is the whole object or a seekable stream (as `fetch_log_file` returns). Past
    `max_unzipped_bytes`, the rest is reported as Malformed.
    """
    stream: IO[bytes] = io.BytesIO(data) if isinstance(data, bytes) else data
    magic = stream.read(2)
    stream.seek(0)
    if magic == _GZIP_MAGIC:
        stream = cast(IO[bytes], gzip.GzipFile(fileobj=stream, mode="rb"))
    capped = cast(BinaryIO, _Capped(stream, max_unzipped_bytes, location.source))
    yield from split_documents(capped, location)


class _Capped(io.RawIOBase):
    """A reader that fails with OSError once more than `limit` bytes were read (split_documents reports
    read failures as Malformed, after the documents already cut)."""

    def __init__(self, inner: IO[bytes], limit: int, name: str) -> None:
        self.inner = inner
        self.limit = limit
        self.name_ = name
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        budget = self.limit - self.count + 1  # one byte past the limit tells "too big" from "exactly"
        want = budget if size is None or size < 0 else min(size, budget)
        chunk = self.inner.read(want)
        self.count += len(chunk)
        if self.count > self.limit:
            raise OSError(f"{self.name_} unzips to more than {self.limit} bytes")
        return chunk
