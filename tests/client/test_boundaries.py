"""The client is HTTP and JSON only: importing it pulls in neither torch nor any server code."""

from __future__ import annotations

import subprocess
import sys

import client


def test_the_client_imports_without_torch_or_server_code() -> None:
    code = (
        "import sys, client\n"
        "heavy = {'torch', 'lbc_core', 'jobs', 'api', 'worker', 'sqlalchemy', 'fastapi', 'celery'}\n"
        "assert not heavy & set(sys.modules), sorted(heavy & set(sys.modules))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_api_of_the_client_is_exactly_this() -> None:
    assert sorted(client.__all__) == sorted(
        [
            "JOB_STATES", "METHODS", "TERMINAL_STATES", "ApiError", "Artifact", "CheckpointInfo",
            "ChecksumMismatch", "Client", "ClientError", "Config", "ConfigError", "ConnectionFailed", "Dataset",
            "Event", "HFModelInfo", "InvalidArgument", "Job", "JobPage", "LogLine", "LogPage", "ModelInfo", "RunWarning", "SpecFileError", "WaitTimeout",
            "load_config", "parse_spec_text", "read_spec", "resolve_config", "save_config",
        ]
    )  # fmt: skip
    for name in client.__all__:
        assert getattr(client, name) is not None, name
