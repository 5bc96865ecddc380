"""Speedup reports in jobs, in this process against SQLite and a local store: after a sparsification job's
export, and as benchmark jobs of their own (from a finished job or an uploaded checkpoint)."""

from __future__ import annotations

import html
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from jobs import auth, repository
from jobs.benchmarks import (
    BENCHMARK_METHOD,
    MANIFEST_ARTIFACT,
    MODEL_ARTIFACTS,
    REPORT_CHART,
    REPORT_HTML,
    REPORT_JSON,
    REPORT_SCHEMA_VERSION,
    dump_benchmark_spec,
    parse_benchmark_spec,
    report_schema,
    requested_device,
)
from jobs.db import transaction
from jobs.models import Checkpoint, Job
from jobs.queue import route_job
from jobs.settings import Settings
from jobs.spec import parse_spec
from jobs.states import JobState
from lbc_core import benchmark as lbc_benchmark
from lbc_core.benchmark import report as lbc_report
from lbc_core.export import CHECKPOINT_FILE, COMPRESSED_FILE, MANIFEST_FILE, MASKS_FILE
from lbc_core.models import build_model
from lbc_core.sparsity import NMPattern, SparsityConfig, build_sparsifier
from tests.lbc_core.benchmark.test_report_cpu import NO_KERNEL_NOTE, _validate
from tests.worker.test_execution import FAST, events, load, submit
from worker import benchmarking, execution
from worker.context import WorkerContext, build_context

REPORT_FILES = {REPORT_JSON, REPORT_HTML, REPORT_CHART}
BENCH = {"batch_sizes": [1, 8]}  # two batch sizes keep every report here well under a second on CPU


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=sqlite_url,
        lease_seconds=30,
        heartbeat_seconds=0.2,
        progress_interval_seconds=0.05,
    )


@pytest.fixture
def ctx(settings: Settings) -> Iterator[WorkerContext]:
    context = build_context(settings, worker_id="test-worker/1")
    yield context
    context.close()


def with_benchmark(spec: dict[str, Any], **benchmark: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(spec))
    copy["benchmark"] = {**BENCH, **benchmark}
    return copy


def submit_benchmark(ctx: WorkerContext, body: dict[str, Any], owner: str = "alice") -> str:
    """What POST /v1/benchmarks stores (tests/api/test_report.py covers the route itself)."""
    spec = parse_benchmark_spec(body)
    source = spec.source
    with transaction(ctx.sessions) as session:
        row = auth.get_or_create_owner(session, owner)
        job, _ = repository.create_job(
            session,
            owner=row,
            spec=dump_benchmark_spec(spec),
            summary={
                "kind": "benchmark",
                "method": BENCHMARK_METHOD,
                "pattern": source.pattern_text,
                "architecture": source.architecture or "mlp",
                "checkpoint_id": source.checkpoint_id,
                "queue": route_job(spec.limits.queue, requested_device(spec), ctx.settings)[0],
            },
            idempotency_key=None,
            max_attempts=3,
            max_active_jobs=100,
        )
        return job.id


def artifacts(ctx: WorkerContext, job_id: str) -> dict[str, Any]:
    with transaction(ctx.sessions) as session:
        return {a.name: a for a in repository.list_artifacts(session, job_id)}


def fetch(ctx: WorkerContext, job_id: str, name: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{job_id}-{name}"
    ctx.store.download_file(artifacts(ctx, job_id)[name].storage_key, path)
    return path


def report_of(ctx: WorkerContext, job_id: str, tmp_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fetch(ctx, job_id, REPORT_JSON, tmp_path).read_text())
    return data


def upload_checkpoint(
    ctx: WorkerContext, state: dict[str, torch.Tensor], tmp_path: Path, owner: str = "alice"
) -> str:
    path = tmp_path / "upload.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with transaction(ctx.sessions) as session:
        row = auth.get_or_create_owner(session, owner)
        stored = ctx.store.put_file(f"checkpoints/{owner}/upload.safetensors", path)
        checkpoint = Checkpoint(
            owner_id=row.id,
            name="upload",
            format="safetensors",
            filename="upload.safetensors",
            size=stored.size,
            sha256=stored.sha256,
            storage_key=stored.key,
        )
        session.add(checkpoint)
        session.flush()
        return checkpoint.id


def sparse_lenet(pattern: NMPattern | None = None) -> tuple[torch.nn.Module, list[str]]:
    torch.manual_seed(0)
    model = build_model("lenet5", width=0.5)
    sparsifier = build_sparsifier(SparsityConfig(method="asp", pattern=pattern or NMPattern(2, 4)))
    sparsifier.prepare(model)
    report = sparsifier.finalize()
    return model.eval(), [layer.name for layer in report.layers]


def test_the_schema_copy_and_artifact_names_match_the_library() -> None:
    assert report_schema() == lbc_benchmark.REPORT_SCHEMA
    assert REPORT_SCHEMA_VERSION == lbc_benchmark.REPORT_SCHEMA_VERSION
    assert MANIFEST_ARTIFACT == MANIFEST_FILE
    assert (COMPRESSED_FILE, CHECKPOINT_FILE) == MODEL_ARTIFACTS
    assert set(benchmarking.EXPORT_FILES) == {MANIFEST_FILE, COMPRESSED_FILE, CHECKPOINT_FILE, MASKS_FILE}


# -- after training -----------------------------------------------------------------------------------------
def _without_native_kernel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A CPU worker where the native N:M kernel cannot be built (no compiler)."""
    monkeypatch.setenv("LBC_NM_CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("LBC_NM_BUILD_DIR", str(tmp_path / "nm-build"))


def test_sparsify_job_on_a_cpu_with_the_native_kernel_times_it(ctx: WorkerContext, tmp_path: Path) -> None:
    job_id = submit(ctx, with_benchmark(FAST))
    assert execution.run_job(ctx, job_id) == JobState.SUCCEEDED
    report = report_of(ctx, job_id, tmp_path)
    _validate(report, report_schema())
    env = report["environment"]
    assert env["sparse_kernels"] is True and env["backend"].startswith("lbc-nm ")
    for layer in report["layers"]:
        for m in layer["measurements"]:
            assert m["sparse"]["median_ms"] > 0 and m["speedup"] > 0
    speedup = (load(ctx, job_id).result or {})["speedup"]
    assert speedup["sparse_kernels"] is True and speedup["median_layer_speedup"] is not None
    assert "against PyTorch's dense linear" in speedup["verdict"]


def test_sparsify_job_publishes_an_honest_cpu_report(
    ctx: WorkerContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_native_kernel(monkeypatch, tmp_path)
    job_id = submit(ctx, with_benchmark(FAST))

    assert execution.run_job(ctx, job_id) == JobState.SUCCEEDED

    job = load(ctx, job_id)
    assert job.result is not None
    stored = artifacts(ctx, job_id)
    assert set(stored) >= REPORT_FILES
    assert stored[REPORT_JSON].content_type == "application/json"
    assert stored[REPORT_HTML].content_type.startswith("text/html")
    assert stored[REPORT_CHART].content_type == "image/svg+xml"
    phases = [e.data["phase"] for e in events(ctx, job_id, "phase")]
    assert phases == ["preparing data", "training", "finalizing", "benchmarking", "uploading"]

    report = report_of(ctx, job_id, tmp_path)
    _validate(report, report_schema())
    assert report["schema"] == "lbc.speedup-report/3"
    assert report["notes"][0] == NO_KERNEL_NOTE  # the plain CPU wording, first
    assert report["environment"]["device"] == "cpu" and report["environment"]["sparse_kernels"] is False
    # The exported model was timed: its layers, its data's input shape, its validation accuracy.
    manifest = json.loads(fetch(ctx, job_id, MANIFEST_FILE, tmp_path).read_text())
    assert [layer["name"] for layer in report["layers"]] == [layer["name"] for layer in manifest["layers"]]
    assert report["model"]["input_shape"] == manifest["data"]["input_shape"] == [1, 8, 8]
    assert report["end_to_end"]["accuracy_given"] == pytest.approx(job.result["val_accuracy"])
    # CPU: few repeats, float32 (the spec left dtypes to the device), dense timings only.
    assert (report["method"]["warmup"], report["method"]["repeats"]) == (1, 5)
    assert report["method"]["batch_sizes"] == [1, 8] and report["method"]["dtypes"] == ["float32"]
    for layer in report["layers"]:
        assert layer["recommendation"] == "n/a"
        for m in layer["measurements"]:
            assert m["dense"]["median_ms"] > 0
            assert (m["sparse"], m["speedup"]) == (None, None)
    for m in report["end_to_end"]["measurements"]:
        assert m["dense"] is not None and (m["sparse"], m["speedup"]) == (None, None)
    assert {f["name"] for f in report["savings"]["files"]} == {
        MANIFEST_FILE,
        COMPRESSED_FILE,
        CHECKPOINT_FILE,
        MASKS_FILE,
    }

    page = html.unescape(fetch(ctx, job_id, REPORT_HTML, tmp_path).read_text())
    assert NO_KERNEL_NOTE in page and "No sparse kernel exists for this device (cpu)" in page
    assert "<svg" in fetch(ctx, job_id, REPORT_CHART, tmp_path).read_text()

    speedup = job.result["speedup"]
    assert speedup["median_layer_speedup"] is None and speedup["end_to_end_speedup"] is None
    assert speedup["layers_recommended_dense"] == [] and speedup["device"] == "cpu"
    assert speedup["sparse_kernels"] is False and speedup["schema"] == REPORT_SCHEMA_VERSION
    assert speedup["verdict"] == report["summary"]["verdict"]
    assert speedup["verdict"].startswith("No sparse kernel exists for this device (cpu)")


def test_a_model_that_did_not_learn_is_flagged_in_the_result_the_log_and_the_report(
    ctx: WorkerContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_native_kernel(monkeypatch, tmp_path)
    spec = with_benchmark(FAST)
    # Nothing moves: the loss stays at ln(10), the accuracy at chance. (With LBC, choosing the masks alone
    # would teach a random MLP something; ASP's masks are fixed at the start.)
    spec["sparsity"]["method"] = "asp"
    spec["train"]["lr"] = 1e-6
    job_id = submit(ctx, spec)

    assert execution.run_job(ctx, job_id) == JobState.SUCCEEDED  # it ran; the warning says it is useless

    job = load(ctx, job_id)
    assert job.result is not None
    (warning,) = job.result["warnings"]
    assert warning["code"] == "did_not_learn" and "try a higher train.lr" in warning["message"]
    assert job.result["lr"] == 1e-6 and job.result["lr_rule"] == "given"
    log_lines = [line for e in events(ctx, job_id, "log") for line in e.data["lines"]]
    assert any("did_not_learn: the model did not learn" in line for line in log_lines)
    report = report_of(ctx, job_id, tmp_path)
    _validate(report, report_schema())
    assert report["notes"][0] == f"Training: {warning['message']}"
    assert report["notes"][1] == NO_KERNEL_NOTE
    page = html.unescape(fetch(ctx, job_id, REPORT_HTML, tmp_path).read_text())
    assert "Training: the model did not learn" in page


def test_benchmark_disabled_publishes_no_report(ctx: WorkerContext) -> None:
    job_id = submit(ctx, with_benchmark(FAST, enabled=False))

    assert execution.run_job(ctx, job_id) == JobState.SUCCEEDED

    assert not REPORT_FILES & set(artifacts(ctx, job_id))
    assert "speedup" not in (load(ctx, job_id).result or {})
    assert "benchmarking" not in [e.data["phase"] for e in events(ctx, job_id, "phase")]


def test_a_failed_benchmark_does_not_fail_the_training(
    ctx: WorkerContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the timer fell over")

    monkeypatch.setattr(benchmarking, "measure", broken)
    job_id = submit(ctx, with_benchmark(FAST))

    assert execution.run_job(ctx, job_id) == JobState.SUCCEEDED

    job = load(ctx, job_id)
    assert job.result is not None and job.result["verified_nm"] is True
    assert job.result["speedup"] == {
        "error_type": "benchmark_error",
        "message": "RuntimeError: the timer fell over",
    }
    names = set(artifacts(ctx, job_id))
    assert "model.nm.safetensors" in names and not REPORT_FILES & names
    log = fetch(ctx, job_id, "job.log", tmp_path).read_text()
    assert "benchmark failed (RuntimeError: the timer fell over)" in log


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_cuda_benchmark_on_a_cpu_worker_is_a_benchmark_error(ctx: WorkerContext) -> None:
    job_id = submit(ctx, with_benchmark(FAST, device="cuda"))

    assert execution.run_job(ctx, job_id) == JobState.SUCCEEDED

    speedup = (load(ctx, job_id).result or {})["speedup"]
    assert speedup["error_type"] == "benchmark_error"
    assert "CUDA is not available" in speedup["message"]


def test_cancel_while_benchmarking_cancels_the_job(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    measure = benchmarking.measure
    seen: list[str] = []

    def cancel_then_measure(*args: Any, **kwargs: Any) -> Any:
        with transaction(ctx.sessions) as session:
            repository.request_cancel(session, session.get(Job, job_id))  # type: ignore[arg-type]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the heartbeat thread sees the flag within a beat (0.2 s)
            try:
                kwargs["stop"]()
            except benchmarking.BenchmarkStopped as exc:
                seen.append(exc.reason)
                break
            time.sleep(0.05)
        return measure(*args, **kwargs)  # stops before its first timing

    monkeypatch.setattr(benchmarking, "measure", cancel_then_measure)
    job_id = submit(ctx, with_benchmark(FAST))

    assert execution.run_job(ctx, job_id) == JobState.CANCELLED

    assert seen == ["cancelled"]
    assert artifacts(ctx, job_id) == {}
    assert ctx.store.list(f"jobs/{job_id}/artifacts/") == []


# -- benchmark jobs -----------------------------------------------------------------------------------------
def test_benchmark_job_of_a_finished_job(
    ctx: WorkerContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_native_kernel(monkeypatch, tmp_path)
    source_id = submit(ctx, with_benchmark(FAST, enabled=False))
    assert execution.run_job(ctx, source_id) == JobState.SUCCEEDED
    source = load(ctx, source_id)

    job_id = submit_benchmark(ctx, {"source": {"job_id": source_id}, "benchmark": {"device": "cpu", **BENCH}})

    assert execution.run_job(ctx, job_id) == JobState.SUCCEEDED, load(ctx, job_id).error_message

    job = load(ctx, job_id)
    assert (job.kind, job.method, job.queue) == ("benchmark", "benchmark", "cpu")
    assert set(artifacts(ctx, job_id)) == REPORT_FILES | {"job.log"}
    phases = [e.data["phase"] for e in events(ctx, job_id, "phase")]
    assert phases == ["preparing model", "benchmarking", "uploading"]
    result = job.result or {}
    assert result["source"] == {"job_id": source_id}
    assert (result["architecture"], result["pattern"], result["device"]) == ("mlp", "2:4", "cpu")
    assert result["val_accuracy"] == pytest.approx((source.result or {})["val_accuracy"])
    assert result["speedup"]["verdict"].startswith("No sparse kernel exists for this device (cpu)")

    report = report_of(ctx, job_id, tmp_path)
    _validate(report, report_schema())
    assert report["model"]["name"] == "mlp" and report["notes"][0] == NO_KERNEL_NOTE
    assert report["end_to_end"]["accuracy_given"] == pytest.approx(result["val_accuracy"])
    assert len(report["layers"]) == result["layers"] >= 1
    assert all(m["sparse"] is None for layer in report["layers"] for m in layer["measurements"])
    assert {f["name"] for f in report["savings"]["files"]} == set(benchmarking.EXPORT_FILES)


def test_benchmark_job_of_an_uploaded_checkpoint(ctx: WorkerContext, tmp_path: Path) -> None:
    model, layers = sparse_lenet()
    checkpoint_id = upload_checkpoint(ctx, model.state_dict(), tmp_path)
    body = {
        "source": {
            "checkpoint_id": checkpoint_id,
            "architecture": "lenet5",
            "args": {"width": 0.5},
            "pattern": {"n": 2, "m": 4},
            "input_shape": [1, 28, 28],
        },
        "benchmark": {"device": "cpu", **BENCH},
    }
    job_id = submit_benchmark(ctx, body)

    assert execution.run_job(ctx, job_id) == JobState.SUCCEEDED, load(ctx, job_id).error_message

    report = report_of(ctx, job_id, tmp_path)
    assert [layer["name"] for layer in report["layers"]] == layers
    assert report["model"] == {
        "name": "lenet5",
        "class": "LeNet5",
        "pattern": "2:4",
        "input_shape": [1, 28, 28],
    }
    assert report["end_to_end"]["accuracy_given"] is None
    assert report["savings"]["sparsified_nonzeros"] * 2 == report["savings"]["sparsified_params"]
    job = load(ctx, job_id)
    assert job.checkpoint_id == checkpoint_id
    # The convolution has no CPU sparse kernel; the Linear layers run on the N:M CPU kernel.
    assert (job.result or {})["speedup"]["layers_not_applicable"] == 1  # features.3


def test_an_uploaded_checkpoint_that_is_not_nm_fails_with_a_clear_message(
    ctx: WorkerContext, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    dense = build_model("lenet5", width=0.5).state_dict()
    checkpoint_id = upload_checkpoint(ctx, dense, tmp_path)
    body = {"source": {"checkpoint_id": checkpoint_id, "architecture": "lenet5", "args": {"width": 0.5}}}
    job_id = submit_benchmark(ctx, body)

    assert execution.run_job(ctx, job_id) == JobState.FAILED

    job = load(ctx, job_id)
    assert (job.error_type, job.attempt) == ("invalid_input", 1)  # not retried
    message = job.error_message or ""
    assert f"checkpoint {checkpoint_id} is not 2:4 sparse" in message
    assert "keeps at most 2 non-zeros in every group of 4" in message
    assert "closest: layer" in message
    assert artifacts(ctx, job_id) == {}


def test_a_checkpoint_of_another_pattern_is_not_accepted_as_this_one(
    ctx: WorkerContext, tmp_path: Path
) -> None:
    model, _ = sparse_lenet(NMPattern(2, 4))
    checkpoint_id = upload_checkpoint(ctx, model.state_dict(), tmp_path)
    body = {
        "source": {
            "checkpoint_id": checkpoint_id,
            "architecture": "lenet5",
            "args": {"width": 0.5},
            "pattern": {"n": 1, "m": 4},
        }
    }
    job_id = submit_benchmark(ctx, body)

    assert execution.run_job(ctx, job_id) == JobState.FAILED
    assert "is not 1:4 sparse" in (load(ctx, job_id).error_message or "")


def test_a_checkpoint_of_another_architecture_names_the_mismatch(ctx: WorkerContext, tmp_path: Path) -> None:
    model, _ = sparse_lenet()
    checkpoint_id = upload_checkpoint(ctx, model.state_dict(), tmp_path)
    body = {"source": {"checkpoint_id": checkpoint_id, "architecture": "lenet5"}}  # width 1.0: other shapes
    job_id = submit_benchmark(ctx, body)

    assert execution.run_job(ctx, job_id) == JobState.FAILED
    job = load(ctx, job_id)
    assert job.error_type == "invalid_input"
    assert f"checkpoint {checkpoint_id} does not fit the model" in (job.error_message or "")
    assert "wrong shape" in (job.error_message or "")


def test_the_worker_rechecks_the_source_owner(ctx: WorkerContext, tmp_path: Path) -> None:
    model, _ = sparse_lenet()
    # The submit refuses another owner's upload under the owner lock, so the row is handed to mallory after
    # the job exists: the worker must not trust what was true at submit time.
    checkpoint_id = upload_checkpoint(ctx, model.state_dict(), tmp_path)
    job_id = submit_benchmark(
        ctx, {"source": {"checkpoint_id": checkpoint_id, "architecture": "lenet5", "args": {"width": 0.5}}}
    )
    with transaction(ctx.sessions) as session:
        mallory = auth.get_or_create_owner(session, "mallory")
        session.get_one(Checkpoint, checkpoint_id).owner_id = mallory.id
    other_job = submit_benchmark(ctx, {"source": {"job_id": "0" * 32}})

    assert execution.run_job(ctx, job_id) == JobState.FAILED
    assert execution.run_job(ctx, other_job) == JobState.FAILED
    assert "not one of the job owner's uploads" in (load(ctx, job_id).error_message or "")
    assert f"job {'0' * 32} does not exist" in (load(ctx, other_job).error_message or "")


def test_a_benchmark_job_stops_at_its_time_limit(
    ctx: WorkerContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = sparse_lenet()
    checkpoint_id = upload_checkpoint(ctx, model.state_dict(), tmp_path)
    body = {
        "source": {"checkpoint_id": checkpoint_id, "architecture": "lenet5", "args": {"width": 0.5}},
        "benchmark": {"device": "cpu", **BENCH},
        "limits": {"time_limit_s": 1},
    }
    job_id = submit_benchmark(ctx, body)
    time_callable = lbc_report.time_callable  # what the worker's timer measures with
    calls: list[int] = []

    def slow(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        time.sleep(1.1)  # the first timing uses up the whole limit
        return time_callable(*args, **kwargs)

    monkeypatch.setattr(lbc_report, "time_callable", slow)

    assert execution.run_job(ctx, job_id) == JobState.FAILED

    job = load(ctx, job_id)
    assert (job.error_type, job.attempt) == ("time_limit", 1)
    assert "time limit of 1s reached while benchmarking" in (job.error_message or "")
    assert len(calls) <= 1 and artifacts(ctx, job_id) == {}


# -- CUDA ---------------------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.filterwarnings("ignore:The PyTorch API of SparseSemiStructuredTensor:UserWarning")
def test_benchmark_job_on_the_gpu_measures_the_2_4_kernel(ctx: WorkerContext, tmp_path: Path) -> None:
    torch.manual_seed(0)
    args = {"input_features": 512, "hidden_dim": 1024, "depth": 3}
    model = build_model("mlp", **args)
    sparsifier = build_sparsifier(SparsityConfig(method="asp", pattern=NMPattern(2, 4)))
    sparsifier.prepare(model)
    layers = [layer.name for layer in sparsifier.finalize().layers]
    checkpoint_id = upload_checkpoint(ctx, model.state_dict(), tmp_path)
    body = {
        "source": {"checkpoint_id": checkpoint_id, "architecture": "mlp", "args": args},
        "benchmark": {"device": "auto", "batch_sizes": [1, 256], "dtypes": ["float16"]},
    }
    job_id = submit_benchmark(ctx, body)

    assert execution.run_job(ctx, job_id) == JobState.SUCCEEDED, load(ctx, job_id).error_message

    job = load(ctx, job_id)
    assert job.queue == "gpu"
    speedup = (job.result or {})["speedup"]
    assert speedup["device"].startswith("cuda") and speedup["sparse_kernels"] is True
    report = report_of(ctx, job_id, tmp_path)
    _validate(report, report_schema())
    assert [layer["name"] for layer in report["layers"]] == layers
    assert (report["method"]["warmup"], report["method"]["repeats"]) == (10, 30)
    timed = [m for layer in report["layers"] for m in layer["measurements"] if m["sparse"] is not None]
    assert timed, "no layer ran on the 2:4 kernel"
    for m in timed:
        assert m["speedup"] == pytest.approx(m["dense"]["median_ms"] / m["sparse"]["median_ms"])
        assert m["recommendation"] in ("sparse", "dense")
    assert NO_KERNEL_NOTE not in report["notes"]
    assert speedup["median_layer_speedup"] == pytest.approx(report["summary"]["median_layer_speedup"])


def test_a_text_task_gets_no_speedup_report_and_says_why(tmp_path: Path) -> None:
    spec = parse_spec(
        {"model": {"source": "huggingface", "path": "llama"}, "dataset": {"source": "text", "path": "c.txt"}}
    )
    files, summary = benchmarking.report_after_training(spec, tmp_path / "export", tmp_path / "report")
    assert files == []
    assert summary["message"] == "the speedup report times image models; task causal-lm gets none yet"
