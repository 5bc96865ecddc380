"""A typed Python client of the sparsification service's REST API (no torch, no server code).

from client import Client
with Client.from_config() as lbc:
    job = lbc.wait(lbc.submit("spec.yaml").id)
"""

from client.client import Client, parse_spec_text, read_spec
from client.config import Config, load_config, resolve_config, save_config
from client.errors import (
    ApiError,
    ChecksumMismatch,
    ClientError,
    ConfigError,
    ConnectionFailed,
    InvalidArgument,
    SpecFileError,
    WaitTimeout,
)
from client.models import (
    JOB_STATES,
    METHODS,
    TERMINAL_STATES,
    Artifact,
    CheckpointInfo,
    Dataset,
    Event,
    HFModelInfo,
    Job,
    JobPage,
    LogLine,
    LogPage,
    ModelInfo,
    RunWarning,
)

__all__ = [
    "JOB_STATES",
    "METHODS",
    "TERMINAL_STATES",
    "ApiError",
    "Artifact",
    "CheckpointInfo",
    "ChecksumMismatch",
    "Client",
    "ClientError",
    "Config",
    "ConfigError",
    "ConnectionFailed",
    "Dataset",
    "Event",
    "HFModelInfo",
    "InvalidArgument",
    "Job",
    "JobPage",
    "LogLine",
    "LogPage",
    "ModelInfo",
    "RunWarning",
    "SpecFileError",
    "WaitTimeout",
    "load_config",
    "parse_spec_text",
    "read_spec",
    "resolve_config",
    "save_config",
]
