"""Object store on S3 or an S3-compatible server (MinIO, Ceph, moto): the distributed mode's store.

Credentials come from boto3's standard chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, a
profile, an instance role); nothing here reads them. Objects live under ``<prefix><key>`` in one bucket.
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from jobs.storage.base import (
    CHUNK_SIZE,
    DEFAULT_CONTENT_TYPE,
    HashingReader,
    ObjectNotFound,
    ObjectStat,
    ObjectStore,
    StoredObject,
    StoreUnavailable,
    atomic_path,
    check_range,
    validate_key,
    validate_prefix,
)

_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
_MiB = 1024 * 1024


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Store(ObjectStore):
    """Uploads go through boto3's transfer manager: objects above ``multipart_threshold`` are sent as a
    multipart upload (parts in parallel, bounded memory), which S3 only makes visible on completion and
    which boto3 aborts on failure, so a put is atomic either way.
    """

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        prefix: str = "",
        client: Any = None,
        multipart_threshold: int = 16 * _MiB,
        multipart_chunksize: int = 16 * _MiB,
        max_concurrency: int = 4,
    ) -> None:
        self.bucket = bucket
        self.region = region
        self.prefix = validate_prefix(prefix)
        if client is None:
            config = Config(
                connect_timeout=5,
                read_timeout=60,
                retries={"max_attempts": 5, "mode": "standard"},
                # Custom endpoints (MinIO, moto) rarely have per-bucket DNS names.
                s3={"addressing_style": "path"} if endpoint_url else {},
            )
            client = boto3.session.Session().client(
                "s3", endpoint_url=endpoint_url, region_name=region, config=config
            )
        self.client = client
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=max_concurrency,
        )

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def _full(self, key: str) -> str:
        return self.prefix + validate_key(key)

    # -- bucket -----------------------------------------------------------------------------------------
    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist; only deployment tooling and tests should call it."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _error_code(exc) not in _NOT_FOUND | {"NoSuchBucket"}:
                raise
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self.client.create_bucket(**kwargs)
        except ClientError as exc:
            if _error_code(exc) != "BucketAlreadyOwnedByYou":
                raise

    # -- writes -----------------------------------------------------------------------------------------
    def put_fileobj(self, key: str, stream: BinaryIO, content_type: str | None = None) -> StoredObject:
        full = self._full(key)
        content_type = content_type or DEFAULT_CONTENT_TYPE
        # Non-seekable, so the transfer manager reads it once, in order: the digest is computed while
        # uploading, without a second pass over a possibly huge file.
        reader = HashingReader(stream)
        self.client.upload_fileobj(
            reader, self.bucket, full, ExtraArgs={"ContentType": content_type}, Config=self._transfer
        )
        return StoredObject(key=key, size=reader.size, sha256=reader.hexdigest(), content_type=content_type)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> StoredObject:
        full = self._full(key)
        content_type = content_type or DEFAULT_CONTENT_TYPE
        self.client.put_object(Bucket=self.bucket, Key=full, Body=data, ContentType=content_type)
        return StoredObject(
            key=key, size=len(data), sha256=hashlib.sha256(data).hexdigest(), content_type=content_type
        )

    # -- reads ------------------------------------------------------------------------------------------
    def open_range(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> Iterator[bytes]:
        check_range(start, end)
        full = self._full(key)
        kwargs: dict[str, Any] = {}
        if start > 0 or end is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=full, **kwargs)
        except ClientError as exc:
            code = _error_code(exc)
            if code in _NOT_FOUND:
                raise ObjectNotFound(key) from None
            if code == "InvalidRange":  # start at or past the end (S3 answers 416)
                return iter(())
            raise
        return _iter_body(response["Body"], chunk_size)

    def stat(self, key: str) -> ObjectStat:
        full = self._full(key)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=full)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND:
                raise ObjectNotFound(key) from None
            raise
        etag = head.get("ETag")
        return ObjectStat(
            size=int(head["ContentLength"]),
            etag=etag.strip('"') if etag else None,
            content_type=head.get("ContentType"),
        )

    def list(self, prefix: str = "") -> builtins.list[str]:
        return sorted(full[len(self.prefix) :] for full in self._list_full(validate_prefix(prefix)))

    def _list_full(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    def download_file(self, key: str, path: str | Path) -> None:
        full = self._full(key)
        with atomic_path(path) as tmp:
            try:
                self.client.download_file(self.bucket, full, str(tmp), Config=self._transfer)
            except ClientError as exc:
                if _error_code(exc) in _NOT_FOUND:
                    raise ObjectNotFound(key) from None
                raise

    # -- deletes ----------------------------------------------------------------------------------------
    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._full(key))

    def delete_prefix(self, prefix: str) -> int:
        prefix = validate_prefix(prefix)
        if not prefix:
            raise ValueError("refusing to delete the whole store: give a non-empty prefix")
        keys = builtins.list(self._list_full(prefix))
        for i in range(0, len(keys), 1000):  # the DeleteObjects limit
            batch = [{"Key": k} for k in keys[i : i + 1000]]
            response = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
            )
            if errors := response.get("Errors"):
                first = errors[0]
                raise OSError(
                    f"could not delete {len(errors)} objects under {prefix!r}: "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )
        return len(keys)

    # -- health -----------------------------------------------------------------------------------------
    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"S3 bucket {self.bucket!r} is not reachable: {exc}") from exc


def _iter_body(body: Any, chunk_size: int) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(chunk_size)
    finally:
        body.close()
