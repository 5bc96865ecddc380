"""Typed settings for the service, read from ``LBC_*`` environment variables (one prefix)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Embedded mode by default (SQLite, local store, SQLite broker, all under ``home``).

    The distributed mode sets ``LBC_DATABASE_URL`` (PostgreSQL), ``LBC_BROKER_URL`` (Redis) and
    ``LBC_STORAGE_BACKEND=s3`` with its bucket and endpoint. Nothing else changes.
    """

    model_config = SettingsConfigDict(env_prefix="LBC_", extra="ignore", frozen=True)

    home: Path = Field(default=Path(".lbc"), description="Directory holding all embedded-mode state")
    database_url: str = Field(default="", description="SQLAlchemy URL; default sqlite under home")
    broker_url: str = Field(default="", description="Celery broker URL; default SQLite broker under home")
    storage_backend: Literal["local", "s3"] = "local"
    storage_path: Path | None = Field(
        default=None, description="Local object store root; default home/objects"
    )
    s3_bucket: str = "lbc-artifacts"
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_prefix: str = ""

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    auth_enabled: bool = True

    max_upload_bytes: int = Field(default=2 * 1024**3, gt=0)
    max_json_body_bytes: int = Field(
        default=1024**2,
        ge=1024,
        description="Largest JSON request body (a job spec is a few KiB); a larger one is a 413",
    )
    # Archive caps for uploads; the worker's extraction allows 200,000 members and 4 GiB, so these may
    # only be lowered (an upload the API accepts must be one the worker can unpack).
    max_upload_members: int = Field(default=200_000, ge=1, le=200_000)
    max_upload_expanded_bytes: int = Field(
        default=4 * 1024**3,
        ge=1,
        le=4 * 1024**3,
        description="Uncompressed bytes an uploaded archive may hold",
    )
    max_model_bytes: int = Field(
        default=4 * 1024**3,
        ge=1,
        le=4 * 1024**3,
        description="Bytes an uploaded Hugging Face model's files (config, weights, tokenizer) may hold; at "
        "most the 4 GiB a worker unpacks",
    )
    max_storage_bytes_per_owner: int = Field(
        default=20 * 1024**3,
        ge=0,
        description="Total size of one owner's stored datasets and checkpoints; 0: unlimited",
    )
    max_job_memory_bytes: int = Field(
        default=8 * 1024**3,
        ge=0,
        description="Refuse a job whose estimated peak memory (weights, gradients, optimizer and LBC state, "
        "activations for its batch) exceeds this; P CPU processes count P times, CUDA processes per GPU; "
        "0: no limit",
    )
    max_attempts: int = Field(default=3, ge=1, le=20)
    lease_seconds: float = Field(
        default=60.0, gt=0, description="A running job whose heartbeat is older is re-queued"
    )
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    queued_resend_seconds: float = Field(
        default=120.0,
        gt=0,
        description="Re-send the task of a job queued this long; each re-send doubles the wait (at most 8x)",
    )
    reaper_interval_seconds: float = Field(default=15.0, gt=0)
    shutdown_grace_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="A worker told to stop (SIGTERM, Ctrl-C) gives its running job this long to checkpoint "
        "and hand itself back to the queue; past it the job's process exits and the job counts an attempt",
    )
    progress_interval_seconds: float = Field(default=1.0, ge=0, description="Throttle for progress writes")
    max_concurrent_jobs_per_owner: int = Field(default=16, ge=1)
    default_queue: str = Field(
        default="gpu", description="Where a job without a cpu device goes; one of the GPU queues"
    )
    gpu_queues: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("gpu",),
        description="Comma-separated queues of GPU workers a job may name in limits.queue (e.g. gpu,h100)",
    )
    cpu_queues: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("cpu",),
        description="Comma-separated queues of CPU workers; the first one takes jobs whose device is cpu",
    )
    worker_threads: int = Field(
        default=0,
        ge=0,
        le=1024,
        description="CPU threads torch may use for one job (0: torch's default, one per core). Set it to "
        "cores / workers when several workers share a machine: oversubscribed thread pools make training "
        "steps many times slower",
    )

    database_connect_timeout_seconds: int = Field(
        default=5,
        ge=2,  # libpq rounds anything lower up to 2 s
        le=300,
        description="PostgreSQL: give up opening a connection after this long (a 503, not a hung request)",
    )
    retry_after_seconds: int = Field(
        default=5,
        ge=1,
        le=3600,
        description="Retry-After of the API's 503 while the database or the object store is unreachable",
    )

    @field_validator("gpu_queues", "cpu_queues", mode="before")
    @classmethod
    def _split_queues(cls, value: Any) -> Any:
        return (
            tuple(part.strip() for part in value.split(",") if part.strip())
            if isinstance(value, str)
            else value
        )

    @model_validator(mode="after")
    def _queues_make_sense(self) -> Settings:
        queues = [*self.gpu_queues, *self.cpu_queues]
        problems = [f"queue {q!r} is listed twice" for q in sorted(set(queues)) if queues.count(q) > 1]
        if not self.gpu_queues or not self.cpu_queues:
            problems.append("gpu_queues and cpu_queues each need at least one queue")
        if self.default_queue not in self.gpu_queues:
            problems.append(f"default_queue {self.default_queue!r} is not one of gpu_queues")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _fill_embedded_defaults(self) -> Settings:
        home = self.home.expanduser().resolve()
        object.__setattr__(self, "home", home)
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{home / 'lbc.db'}")
        if not self.broker_url:
            object.__setattr__(self, "broker_url", f"sqla+sqlite:///{home / 'broker.db'}")
        if self.storage_path is None:
            object.__setattr__(self, "storage_path", home / "objects")
        return self

    @property
    def embedded(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
