"""Object storage for checkpoints, artifacts and uploads: a local directory or an S3 bucket, one contract.

``make_store(settings)`` picks the back end from configuration. ``S3Store`` is imported lazily so the
embedded mode never pays for boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobs.storage.base import (
    ObjectNotFound,
    ObjectStat,
    ObjectStore,
    StoredObject,
    StoreUnavailable,
    sha256_file,
    validate_key,
    validate_prefix,
)
from jobs.storage.local import LocalStore

if TYPE_CHECKING:
    from jobs.settings import Settings
    from jobs.storage.s3 import S3Store

__all__ = [
    "LocalStore",
    "ObjectNotFound",
    "ObjectStat",
    "ObjectStore",
    "S3Store",
    "StoreUnavailable",
    "StoredObject",
    "make_store",
    "sha256_file",
    "validate_key",
    "validate_prefix",
]


def make_store(settings: Settings) -> ObjectStore:
    """The store the settings describe. Does not create an S3 bucket (see ``S3Store.ensure_bucket``)."""
    if settings.storage_backend == "s3":
        from jobs.storage.s3 import S3Store

        return S3Store(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            prefix=settings.s3_prefix,
        )
    assert settings.storage_path is not None  # filled in by Settings
    return LocalStore(settings.storage_path)


def __getattr__(name: str) -> Any:
    if name == "S3Store":
        from jobs.storage.s3 import S3Store

        return S3Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
