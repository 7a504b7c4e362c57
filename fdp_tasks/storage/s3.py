"""An S3 bucket (or an S3-compatible store: MinIO, Ceph, moto) as a storage, through boto3.

`s3://bucket/prefix` names it; every key lives under the prefix. Where to connect and with
which credentials follows boto3's standard chain: the `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`
environment variables, a profile (`AWS_PROFILE`, or `profile=`), instance roles; the endpoint
from `endpoint_url=`, else `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`. Credentials are never
logged or put into messages; presigned URLs are credentials too, and messages show them
without their query string.

Large files go up in parts (`part_size`, `concurrency` parts at a time), so memory stays
bounded by part_size x concurrency whatever the size; an S3 object appears only once its
single or final multipart request completes, which is what makes a put atomic. A boto3
client is thread-safe, so one `S3Storage` serves many threads.

A multipart upload of a file that fails or is killed is not aborted: the next put of the
same key finds it (`list_multipart_uploads`), keeps the parts S3 holds whose size and MD5
(the part's ETag) match the file's bytes there (`list_parts`), and sends only the others. A
bucket lifecycle rule (AbortIncompleteMultipartUpload) clears uploads nobody resumes.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from fdp_tasks.errors import BadInput
from fdp_tasks.files import CHUNK
from fdp_tasks.storage.base import (
    DEFAULT_EXPIRY,
    ObjectMissing,
    Progress,
    Source,
    Storage,
    StorageError,
    Stored,
    check_key,
    check_method,
    check_range,
    replayable,
    sha1_of,
    source_size,
    verify_sha1,
)

PART_SIZE = 8 * 1024 * 1024
CONCURRENCY = 4
READ_ATTEMPTS = 5
SINGLE_COPY_LIMIT = 5 * 1024**3
MISSING = ("404", "NoSuchKey", "NotFound")


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix/` -> ("bucket", "some/prefix"); the prefix may be empty."""
    split = urlsplit(url)
    if split.scheme != "s3" or not split.netloc:
        raise BadInput(f"{url!r}: expected an S3 URL such as s3://bucket/prefix")
    if split.query or split.fragment:
        raise BadInput(f"{url!r}: an S3 URL takes no query or fragment")
    prefix = split.path.strip("/")
    if prefix:
        check_key(prefix, f"bucket {split.netloc}")
    return split.netloc, prefix


class S3Storage(Storage):
    """Objects in one bucket under one prefix."""

    kind = "an S3 bucket"

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        profile: str | None = None,
        client: Any = None,
        part_size: int = PART_SIZE,
        concurrency: int = CONCURRENCY,
    ):
        self.bucket, self.prefix = parse_s3_url(url)
        try:
            import boto3
            from boto3.s3.transfer import TransferConfig
            from botocore.config import Config
        except ImportError:
            raise BadInput(
                f"{url}: S3 storage needs boto3, which is not installed: "
                "pip install 'fdp-tasks[s3]'"
            ) from None
        self.url = f"s3://{self.bucket}/{self.prefix + '/' if self.prefix else ''}"
        if client is None:
            endpoint = (
                endpoint_url
                or os.environ.get("AWS_ENDPOINT_URL_S3")
                or os.environ.get("AWS_ENDPOINT_URL")
                or None
            )
            session = boto3.session.Session(profile_name=profile)
            client = session.client(
                "s3",
                endpoint_url=endpoint,
                region_name=region_name or session.region_name or "us-east-1",
                config=Config(
                    signature_version="s3v4",
                    retries={"max_attempts": 5, "mode": "standard"},
                    max_pool_connections=max(10, concurrency * 2),
                ),
            )
        self.client = client
        self.part_size = part_size
        self.concurrency = concurrency
        self.transfer_config = TransferConfig(
            multipart_threshold=part_size,
            multipart_chunksize=part_size,
            max_concurrency=concurrency,
            use_threads=concurrency > 1,
        )

    # ------------------------------------------------------------------ plumbing
    def object_key(self, key: str) -> str:
        rel = check_key(key, self.url)
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _fail(self, exc: Exception, what: str, key: str) -> StorageError:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "?"))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in MISSING:
                return ObjectMissing(f"{self.url}: no object {key}", status)
            message = error.get("Message") or code
            return StorageError(f"{self.url}: {what} {key}: {code}: {message}", status)
        return StorageError(f"{self.url}: {what} {key}: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ the interface
    def exists(self, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        name = self.object_key(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=name)
        except (ClientError, BotoCoreError) as exc:
            error = self._fail(exc, "look up", key)
            if isinstance(error, ObjectMissing):
                return False
            raise error from None
        return True

    def put(
        self,
        source: Source,
        key: str,
        *,
        sha1: str | None = None,
        progress: Progress | None = None,
    ) -> Stored:
        """Upload, in parts above `part_size`. With `sha1` the source is hashed first (S3
        checks no SHA-1 of ours), so wrong bytes are refused before any is sent."""

        name = self.object_key(key)
        if sha1:
            with replayable(source) as replay:
                verify_sha1(sha1_of(replay), sha1, f"{source} for {self.url}{key}")
                return self._upload(replay, key, name, progress)
        return self._upload(source, key, name, progress)

    def _upload(self, source: Source, key: str, name: str, progress: Progress | None) -> Stored:
        from botocore.exceptions import BotoCoreError, ClientError

        size = source_size(source)
        callback = _Cumulative(progress) if progress else None
        try:
            if isinstance(source, (str, os.PathLike)) and size and size > self.part_size:
                self._upload_parts(os.fspath(source), name, size, callback)
            elif isinstance(source, (str, os.PathLike)):
                self.client.upload_file(
                    os.fspath(source),
                    self.bucket,
                    name,
                    Config=self.transfer_config,
                    Callback=callback,
                )
            else:
                self.client.upload_fileobj(
                    source, self.bucket, name, Config=self.transfer_config, Callback=callback
                )
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, "upload", key) from None
        if size is None:
            size = int(self.client.head_object(Bucket=self.bucket, Key=name)["ContentLength"])
        return Stored(check_key(key, self.url), size)

    def _upload_parts(
        self, path: str, name: str, size: int, progress: Callable[[int], None] | None
    ) -> None:
        """A multipart upload that resumes an unfinished one of the same key (see the
        module docstring), `concurrency` parts at a time, then completes it."""
        count = -(-size // self.part_size)
        upload_id, etags = self._unfinished(path, name, size)
        if upload_id is None:
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=name)[
                "UploadId"
            ]

        from s3transfer.utils import ReadFileChunk, signal_not_transferring, signal_transferring

        # as boto3's own uploads do: progress counts bytes on the wire, not checksum reads
        events = self.client.meta.events
        events.register_first(
            "request-created.s3", signal_not_transferring, unique_id="s3upload-not-transferring"
        )
        events.register_last(
            "request-created.s3", signal_transferring, unique_id="s3upload-transferring"
        )

        def moved(bytes_transferred: int, **_: object) -> None:
            if progress is not None:
                progress(bytes_transferred)

        def send(number: int) -> tuple[int, str]:
            body = ReadFileChunk.from_filename(
                path,
                (number - 1) * self.part_size,
                self.part_size,
                callbacks=[moved],
                enable_callbacks=False,
            )
            with body:
                answer = self.client.upload_part(
                    Bucket=self.bucket, Key=name, UploadId=upload_id, PartNumber=number, Body=body
                )
            return number, str(answer["ETag"])

        todo = [n for n in range(1, count + 1) if n not in etags]
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            etags.update(pool.map(send, todo))
        self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=name,
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": n, "ETag": etags[n]} for n in range(1, count + 1)]
            },
        )

    def _unfinished(self, path: str, name: str, size: int) -> tuple[str | None, dict[int, str]]:
        """The newest unfinished multipart upload of `name`, with the parts of it that hold
        this file's bytes (number -> ETag); (None, {}) when there is none."""
        listing = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=name)
        uploads = [u for u in listing.get("Uploads", []) if u.get("Key") == name]
        if not uploads:
            return None, {}
        newest = max(uploads, key=lambda u: u.get("Initiated") or 0)
        upload_id = str(newest["UploadId"])
        kept: dict[int, str] = {}
        pages = self.client.get_paginator("list_parts").paginate(
            Bucket=self.bucket, Key=name, UploadId=upload_id
        )
        for page in pages:
            for part in page.get("Parts", []):
                number, etag = int(part["PartNumber"]), str(part["ETag"])
                expected = min(self.part_size, size - (number - 1) * self.part_size)
                if part.get("Size") != expected or expected <= 0:
                    continue
                local = hashlib.md5(  # noqa: S324 - S3's part checksum, not for security
                    _read_part(path, number, self.part_size), usedforsecurity=False
                ).hexdigest()
                if etag.strip('"') == local:
                    kept[number] = etag
        return upload_id, kept

    def open(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        check_range(start, end)
        name = self.object_key(key)
        if end is not None and end == start:
            return iter(())
        first = self._get(key, name, start, end, None)
        return self._stream(key, name, start, end, first)

    def _get(self, key: str, name: str, start: int, end: int | None, etag: str | None) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        args: dict[str, Any] = {"Bucket": self.bucket, "Key": name}
        if start or end is not None:
            args["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        if etag:
            args["IfMatch"] = etag  # a resumed read must continue the same object
        try:
            return self.client.get_object(**args)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code == "InvalidRange":
                return None  # the range starts at the end: nothing to read
            raise self._fail(exc, "read", key) from None
        except BotoCoreError as exc:
            raise self._fail(exc, "read", key) from None

    def _stream(
        self, key: str, name: str, start: int, end: int | None, answer: Any
    ) -> Iterator[bytes]:
        """The body in chunks; a connection dropped mid-way is resumed where it stopped."""
        from botocore.exceptions import BotoCoreError

        position, failures = start, 0
        while answer is not None:
            etag = answer.get("ETag")
            body = answer["Body"]
            try:
                for block in body.iter_chunks(CHUNK):
                    if block:
                        position += len(block)
                        yield block
                return
            except (BotoCoreError, OSError) as exc:
                failures += 1
                if failures >= READ_ATTEMPTS:
                    raise self._fail(exc, f"read (after {position} bytes)", key) from None
            finally:
                body.close()
            if end is not None and position >= end:
                return
            answer = self._get(key, name, position, end, etag)

    def presign(self, key: str, method: str = "GET", expires: int = DEFAULT_EXPIRY) -> str:
        operation = {"GET": "get_object", "PUT": "put_object"}[check_method(method)]
        params = {"Bucket": self.bucket, "Key": self.object_key(key)}
        return str(
            self.client.generate_presigned_url(operation, Params=params, ExpiresIn=int(expires))
        )

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))
        except (ClientError, BotoCoreError) as exc:
            error = self._fail(exc, "delete", key)
            if not isinstance(error, ObjectMissing):
                raise error from None

    def list(self, prefix: str = "") -> Iterator[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        if prefix:
            check_key(prefix, self.url)
        base = f"{self.prefix}/" if self.prefix else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=base + prefix
        )
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"][len(base) :]
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, "list", prefix or "(all)") from None

    def promote(self, staged: str, key: str, sha1: str) -> bool:
        """Hash the staged object as it streams from S3, then have S3 copy exactly that
        version (If-Match on its ETag) to `key`: the bytes never come back up, and an
        overwrite of the staged object meanwhile makes the copy fail instead of slipping
        through. Wrong bytes are deleted."""
        from botocore.exceptions import BotoCoreError, ClientError

        source = self.object_key(staged)
        try:
            answer = self._get(staged, source, 0, None, None)
        except ObjectMissing:
            return False
        if answer is None:
            return False
        etag = answer.get("ETag")
        digest = hashlib.sha1(usedforsecurity=False)
        for block in self._stream(staged, source, 0, None, answer):
            digest.update(block)
        if digest.hexdigest() != sha1.lower():
            self.delete(staged)
            return False
        origin = {"Bucket": self.bucket, "Key": source}
        try:
            if int(answer.get("ContentLength") or 0) < SINGLE_COPY_LIMIT:
                self.client.copy_object(
                    CopySource=origin,
                    Bucket=self.bucket,
                    Key=self.object_key(key),
                    CopySourceIfMatch=etag,
                )
            else:  # S3 copies more than 5 GB only in parts
                self.client.copy(
                    origin,
                    self.bucket,
                    self.object_key(key),
                    ExtraArgs={"CopySourceIfMatch": etag},
                    Config=self.transfer_config,
                )
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 412 or exc.response.get("Error", {}).get("Code") in (
                "PreconditionFailed",
                "412",
            ):
                return False  # rewritten while we hashed: the new bytes are not verified
            raise self._fail(exc, "copy", staged) from None
        except BotoCoreError as exc:
            raise self._fail(exc, "copy", staged) from None
        self.delete(staged)
        return True

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close is not None:
            close()


def _read_part(path: str, number: int, part_size: int) -> bytes:
    """Part `number` (from 1) of a file cut in parts of `part_size` bytes."""
    with open(path, "rb") as handle:
        handle.seek((number - 1) * part_size)
        return handle.read(part_size)


class _Cumulative:
    """boto3 reports bytes per read; the storage interface promises the total so far."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.total = 0
        self.lock = threading.Lock()

    def __call__(self, increment: int) -> None:
        with self.lock:
            self.total += increment
            total = self.total
        self.progress(total)
