"""The dashboard in headless Chromium against a real ``lbc serve``: sign in with the printed link, submit
a job through the schema-generated form, watch it finish live, open its report, download an artifact,
cancel a running job, and find another owner's job unreachable.

The tests run in order and share one server (module scope); each has its own browser tab.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.dashboard.conftest import Server
from tests.hf_models import hand_made_model, zip_of
from tests.integration.support import LBC, wait_for

try:
    from playwright.sync_api import Page, expect
except ImportError:  # the browser fixture reports it (a failure in CI)
    if os.environ.get("CI"):
        raise
    pytest.skip("playwright is not installed", allow_module_level=True)

pytestmark = pytest.mark.timeout(180)

JOB_URL = re.compile(r"#/jobs/([0-9a-f]{32})$")


def api(server: Server, key: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {key or server.key}"})


def assert_key_never_logged(server: Server) -> None:
    """Only `lbc serve`'s own lines (the one that shows a new key once, the link) may hold the key; the
    API's access log and every other process's lines may not."""
    leaked = [
        line
        for line in server.process.log().splitlines()
        if server.key in line and not line.startswith("lbc serve:")
    ]
    assert leaked == []


def shot(page: Page, artifacts_dir: Path, name: str, full_page: bool = True) -> None:
    page.screenshot(path=str(artifacts_dir / f"{name}.png"), full_page=full_page)


UNLABELLED = """() => [...document.querySelectorAll("input, select, textarea, button, progress, canvas")]
    .filter((el) => el.getClientRects().length > 0)
    .filter((el) => {
        if (el.tagName === "BUTTON") return !el.textContent.trim() && !el.getAttribute("aria-label");
        if (el.tagName === "CANVAS") return !el.getAttribute("aria-label");
        const labelled = (el.labels && el.labels.length) || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
        return !labelled;
    })
    .map((el) => el.id || el.outerHTML.slice(0, 80))"""


def assert_everything_is_labelled(page: Page) -> None:
    """Every visible control has an accessible name (a label, aria-label or its text)."""
    assert page.evaluate(UNLABELLED) == []


def fill_job_form(page: Page, **fields: str) -> None:
    """Fields by their spec path with dots as dashes (the form's input ids are f-<path>)."""
    for path, value in fields.items():
        control = page.locator(f"#f-{path}")
        tag = control.evaluate("el => el.tagName")
        if tag == "SELECT":
            control.select_option(value)
        elif control.get_attribute("type") == "checkbox":
            control.set_checked(value == "true")
        else:
            control.fill(value)


def test_sign_in_with_the_printed_link_then_submit_a_job_and_watch_it_finish_live(
    page: Page, server: Server, artifacts_dir: Path
) -> None:
    assert "/#key=" in server.link  # the fragment, which the browser never sends
    page.goto(server.link)
    expect(page.get_by_role("heading", name="Jobs", level=1)).to_be_visible()
    assert "key=" not in page.url and page.url.endswith("/#/jobs"), page.url  # the key left the address bar
    assert page.evaluate("sessionStorage.getItem('lbc.apiKey')") == server.key
    assert_key_never_logged(server)
    loads: list[str] = []
    page.on("load", lambda: loads.append(page.url))
    api_urls: list[str] = []
    page.on("request", lambda request: api_urls.append(request.url) if "/v1/" in request.url else None)
    assert_everything_is_labelled(page)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="New job").click()
    expect(page.locator("#submit-job")).to_be_visible()
    expect(page.locator("#f-train-epochs")).to_have_value("10")  # defaults from the schema
    expect(page.locator("#f-sparsity-method")).to_have_value("lbc")
    assert_everything_is_labelled(page)

    # A spec the server rejects: its 422 message appears next to the field it names.
    fill_job_form(
        page,
        **{"name": "tiny digits", "model-architecture": "mlp", "dataset-source": "digits"},
        **{"dataset-limit": "600", "train-epochs": "3", "train-batch_size": "64", "sparsity-m": "2"},
    )
    page.locator("#submit-job").click()
    expect(page.locator("#f-sparsity-n-error")).to_contain_text("smaller than m")
    expect(page.locator("#f-sparsity-n")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#form-errors")).to_contain_text("sparsity.n")
    # A client-side check: no request is made for an out-of-range value.
    fill_job_form(page, **{"sparsity-m": "4", "train-epochs": "0"})
    page.locator("#submit-job").click()
    expect(page.locator("#f-train-epochs-error")).to_contain_text("at least 1")
    shot(page, artifacts_dir, "01-new-job-form-errors", full_page=False)

    fill_job_form(page, **{"train-epochs": "3"})
    page.locator("#submit-job").click()
    expect(page).to_have_url(JOB_URL)
    match = JOB_URL.search(page.url)
    assert match is not None
    job_id = match.group(1)
    server.notes["job_id"] = job_id
    badge = page.locator("#job-state .badge")
    first_state = badge.get_attribute("data-state")
    assert first_state in ("queued", "running"), first_state

    # Live over the event stream: the page is never reloaded while the job runs to the end.
    expect(page.locator("#job-state [data-state=succeeded]")).to_be_visible(timeout=90_000)
    expect(page.locator("#stat-epoch")).to_have_text("3 / 3")
    expect(page.locator("#stat-accuracy")).to_have_text(re.compile(r"^\d+\.\d\d%$"))
    # A succeeded job can be neither cancelled nor retried: no button that could only answer 409.
    expect(page.locator("#cancel-job")).to_be_hidden()
    expect(page.locator("#retry-job")).to_be_hidden()
    # The device it trained on (this machine has no GPU), not the queue an "auto" job waited in.
    device = page.locator(".meta div", has=page.locator("dt", has_text="Device")).locator("dd")
    expect(device).to_have_text("cpu")
    expect(page.locator(".meta dt", has_text="Queue")).to_have_count(0)
    assert loads == [], loads
    for chart in ("Loss", "Accuracy", "Learning rate", "Alive combinations per group"):
        points = page.locator(f"figure[data-chart='{chart}'] > svg").get_attribute("data-points")
        assert points is not None and int(points) >= 3, (chart, points)

    layers = page.locator("#layers-table tbody tr")
    expect(layers.first).to_be_visible()
    assert layers.count() >= 1
    expect(layers.first.locator("td").nth(5)).to_have_text("✓ yes")
    expect(layers.first.locator("td").nth(3)).to_have_text("50.0%")

    page.locator("#masks").get_by_role("button", name="Show mask").click()
    expect(page.locator("#mask-canvas")).to_be_visible()
    expect(page.locator("#mask-description")).to_contain_text("Kept")
    expect(page.locator("#mask-description")).to_contain_text("(50.0%)")
    assert_everything_is_labelled(page)
    shot(page, artifacts_dir, "02-job-succeeded")

    page.get_by_role("link", name="← All jobs").click()
    row = page.locator(f"#jobs-table tr[data-job-id='{job_id}']")
    expect(row).to_contain_text("succeeded")
    expect(row).to_contain_text("mlp")
    expect(row).to_contain_text("digits")
    expect(row.locator("progress")).to_have_attribute("value", "100")
    assert loads == [], loads
    # The key travels in the Authorization header only (the event stream too), never in a URL.
    assert api_urls and not [url for url in api_urls if "key" in url.split("?", 1)[-1]], api_urls
    assert any(url.endswith(f"/v1/jobs/{job_id}/events") for url in api_urls), api_urls
    shot(page, artifacts_dir, "03-jobs-list", full_page=False)


def _publish_speedup_report(server: Server, job_id: str, layers: list[dict[str, Any]]) -> None:
    """Put a speedup report beside the job's other artifacts, the way a worker records them (rows and
    stored objects). The numbers are made up: they stand for a GPU with a sparse kernel."""
    report = {
        "schema": "lbc.speedup-report/3",
        "created_at": "2025-01-01T00:00:00Z",
        "model": {"name": "mlp", "class": "MLP", "pattern": "2:4", "input_shape": [64]},
        "environment": {
            "device": "cuda",
            "device_name": "test GPU",
            "backend": "cuSPARSELt",
            "sparse_kernels": True,
        },
        "method": {"batch_sizes": [64], "dtypes": ["float16"], "min_speedup": 1.05},
        "layers": [
            {
                "name": layer["name"],
                "kind": "Linear",
                "weight_shape": layer["shape"],
                "density": 0.5,
                "compliance": {"compliant": True},
                "flops_per_sample": {"dense": 1000, "nm": 500},
                "measurements": [
                    {
                        "batch_size": 64,
                        "dtype": "float16",
                        "gemm": {"m": 64, "n": layer["shape"][0], "k": layer["shape"][1], "groups": 1},
                        "dense": {"median_ms": 0.02},
                        "sparse": {"median_ms": 0.016},
                        "speedup": 1.25,
                        "recommendation": "sparse",
                        "reason": "sparse kernel faster",
                    }
                ],
                "recommendation": "sparse",
                "reason": "faster at every measured batch size",
            }
            for layer in layers
        ],
        "end_to_end": {
            "measurements": [
                {
                    "batch_size": 64,
                    "dtype": "float16",
                    "dense": {"median_ms": 0.1},
                    "sparse": {"median_ms": 0.09},
                    "speedup": 1.11,
                    "reason": None,
                }
            ]
        },
        "savings": {"params_dense": 1000, "params_nonzero": 600, "flops_ratio": 0.55},
        "summary": {
            "median_layer_speedup": 1.25,
            "end_to_end_speedup": 1.11,
            "verdict": "keep the sparse layers",
        },
        "notes": ["Timings are medians of CUDA-event timed repeats."],
    }
    files = [
        ("speedup_report.json", json.dumps(report).encode(), "application/json"),
        (
            "speedup_report.html",
            b"<!doctype html><html><head><style>h1{color:#123}</style></head><body><h1>Speedup report page</h1></body></html>",
            "text/html; charset=utf-8",
        ),
        (
            "speedup_chart.svg",
            b'<svg xmlns="http://www.w3.org/2000/svg" width="200" height="40"><rect width="150" height="20" fill="#1d4ed8"/></svg>',
            "image/svg+xml",
        ),
    ]
    _publish_artifacts(server, job_id, files)


def _publish_artifacts(server: Server, job_id: str, files: list[tuple[str, bytes, str]]) -> None:
    """Store ``files`` as the job's artifacts, the way a worker records them (rows and stored objects)."""
    from jobs.db import make_engine, make_session_factory, transaction
    from jobs.models import Artifact
    from jobs.settings import Settings
    from jobs.storage import make_store

    settings = Settings(
        home=server.home,
        database_url=f"sqlite:///{server.home / 'lbc.db'}",
        storage_backend="local",
        storage_path=server.home / "objects",
    )
    store = make_store(settings)
    engine = make_engine(settings.database_url)
    try:
        with transaction(make_session_factory(engine)) as session:
            for name, data, content_type in files:
                stored = store.put_bytes(f"jobs/{job_id}/artifacts/{name}", data, content_type)
                session.add(
                    Artifact(
                        job_id=job_id,
                        name=name,
                        size=stored.size,
                        sha256=stored.sha256,
                        content_type=content_type,
                        storage_key=stored.key,
                    )
                )
    finally:
        engine.dispose()


def test_open_the_report_and_download_an_artifact_with_its_listed_sha256(
    page: Page, server: Server, artifacts_dir: Path
) -> None:
    job_id = server.notes.get("job_id")
    if job_id is None:
        pytest.skip("needs the job of the first test")
    with api(server) as client:
        names = {item["name"] for item in client.get(f"/v1/jobs/{job_id}/artifacts").json()["items"]}
        replay = client.get(f"/v1/jobs/{job_id}/events", params={"follow": "false"}).text
    # The first connection of the event stream breaks after two events: the page reconnects by itself
    # and resumes after the last event it saw (Last-Event-ID), so it still ends on the final state.
    first_two = [block for block in replay.split("\n\n") if block.startswith("id: ")][:2]
    last_seen = re.match(r"id: (\d+)", first_two[-1])
    assert last_seen is not None
    resumed_after: list[str | None] = []

    def break_the_first_stream(route: Any) -> None:
        resumed_after.append(route.request.headers.get("last-event-id"))
        if len(resumed_after) == 1:
            body = "retry: 200\n\n" + "\n\n".join(first_two) + "\n\n"
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)
        else:
            route.continue_()

    page.route(f"**/v1/jobs/{job_id}/events", break_the_first_stream)

    page.goto(f"{server.link}#/jobs/{job_id}")  # the link keeps a deep route after signing in
    expect(page.locator("#stream-status")).to_have_attribute("data-status", "ended")
    expect(page.locator("#job-state [data-state=succeeded]")).to_be_visible()
    assert resumed_after == [None, last_seen.group(1)]
    assert "key=" not in page.url
    if "speedup_report.json" in names:  # what the worker measured on this machine
        expect(page.locator("#speedup-report")).to_be_visible()
        expect(page.locator("#speedup-verdict")).not_to_be_empty()
        chart = page.locator("#speedup-section figure.chart").first
        expect(chart.locator("figcaption")).to_contain_text(re.compile("Measured speedup|FLOPs per sample"))
        expect(page.locator("#speedup-layers tbody tr").first).to_be_visible()
    else:
        expect(page.locator("#speedup")).to_contain_text("No speedup report for this job")
    if "speedup_report.html" in names:
        page.locator("#open-report-page").click()
        expect(page.frame_locator("iframe.report-frame").locator("h1")).to_contain_text("Speedup report")
    page.locator("#speedup-section").screenshot(path=str(artifacts_dir / "04-speedup-report.png"))

    row = page.locator("#artifacts-table tr[data-artifact='model.safetensors']")
    listed = row.locator("code.sha").get_attribute("data-sha256")
    assert listed and re.fullmatch(r"[0-9a-f]{64}", listed)
    with page.expect_download() as waiting:
        row.get_by_role("button", name="Download model.safetensors").click()
    download = waiting.value
    assert download.suggested_filename == "model.safetensors"
    path = download.path()
    assert path is not None
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == listed
    expect(page.locator("#artifacts")).to_contain_text("Downloaded model.safetensors")
    page.locator("#artifacts-section").screenshot(path=str(artifacts_dir / "05-artifacts.png"))


def test_cancel_a_running_job_from_its_page(page: Page, server: Server, artifacts_dir: Path) -> None:
    page.goto(server.link)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="New job").click()
    fill_job_form(
        page,
        **{"name": "long lenet5", "model-architecture": "lenet5", "model-args": '{"width": 0.5}'},
        **{"dataset-source": "digits", "train-epochs": "400", "benchmark-enabled": "false"},
    )
    page.locator("#submit-job").click()
    expect(page).to_have_url(JOB_URL)
    match = JOB_URL.search(page.url)
    assert match is not None
    server.notes["cancelled_id"] = match.group(1)
    expect(page.locator("#job-state [data-state=running]")).to_be_visible(timeout=60_000)
    expect(page.locator("#stat-epoch")).to_have_text(re.compile(r"^\d+ / 400$"), timeout=30_000)
    expect(page.locator("#stream-status")).to_have_attribute("data-status", "live")
    expect(page.locator("#retry-job")).to_be_hidden()
    shot(page, artifacts_dir, "06-job-running", full_page=False)

    page.locator("#cancel-job").click()
    expect(page.locator("#job-state [data-state=cancelled]")).to_be_visible(timeout=30_000)
    expect(page.locator("#cancel-job")).to_be_hidden()
    expect(page.locator("#retry-job")).to_be_visible()
    expect(page.locator("#retry-job")).to_be_enabled()
    expect(page.locator("#action-message")).to_have_text("Job cancelled.")
    shot(page, artifacts_dir, "07-job-cancelled", full_page=False)

    page.get_by_role("link", name="← All jobs").click()
    page.locator("#filter-status").select_option("cancelled")
    page.get_by_role("button", name="Apply filters").click()
    rows = page.locator("#jobs-table tbody tr[data-job-id]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("long lenet5")
    expect(rows.first).to_contain_text("cancelled")


def test_another_owner_cannot_reach_the_job(page: Page, server: Server, artifacts_dir: Path) -> None:
    job_id = server.notes.get("job_id")
    if job_id is None:
        pytest.skip("needs the job of the first test")
    made = subprocess.run(
        [LBC, "keys", "create", "--name", "bob", "--owner", "bob"],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    bob = made.stdout.strip()
    assert bob.startswith("lbc_"), made.stdout

    page.goto(f"{server.base_url}/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert_everything_is_labelled(page)
    page.get_by_label("API key").fill("lbc_not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-error")).to_have_text("This API key was not accepted.")
    shot(page, artifacts_dir, "08-sign-in-rejected", full_page=False)
    page.get_by_label("API key").fill(bob)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Jobs", level=1)).to_be_visible()
    expect(page.locator("#jobs-table")).to_contain_text("No jobs yet")

    page.goto(f"{server.base_url}/#/jobs/{job_id}")
    expect(page.get_by_role("heading", name="Job not found")).to_be_visible()
    expect(page.locator("#job-error")).to_contain_text("not found")
    shot(page, artifacts_dir, "09-other-owner-not-found", full_page=False)
    with api(server, bob) as client:
        for path in ("", "/artifacts", "/masks", "/artifacts/model.safetensors"):
            assert client.get(f"/v1/jobs/{job_id}{path}").status_code == 404, path

    page.locator("#sign-out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('lbc.apiKey')") is None


def test_an_old_query_link_signs_in_but_its_key_never_reaches_a_log(page: Page, server: Server) -> None:
    page.goto(f"{server.base_url}/?key={server.key}")  # the form `lbc serve` printed before
    expect(page.get_by_role("heading", name="Jobs", level=1)).to_be_visible()
    assert "key=" not in page.url, page.url
    # The browser did send this one: the access log shows the request, with the key blanked out.
    wait_for(lambda: "GET /?key=*** HTTP" in server.process.log(), 10, "the access log line", interval=0.1)
    assert_key_never_logged(server)

    page.locator("#sign-out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.goto(server.link)  # the printed link pasted into a tab already open: only the fragment changes
    expect(page.get_by_role("heading", name="Jobs", level=1)).to_be_visible()
    assert page.url.endswith("/#/jobs"), page.url
    assert page.evaluate("sessionStorage.getItem('lbc.apiKey')") == server.key


def test_upload_a_dataset_with_progress_then_pick_it_in_the_job_form(
    page: Page, server: Server, artifacts_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "tiny-digits.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.random((60, 1, 8, 8), dtype=np.float32), y=np.arange(60) % 3)

    page.goto(server.link)
    page.get_by_role("navigation", name="Main").get_by_role(
        "link", name="Datasets, checkpoints & models"
    ).click()
    expect(page.get_by_role("heading", name="Datasets, checkpoints & models")).to_be_visible()
    expect(page.locator("#datasets-list")).to_contain_text("No datasets uploaded yet")
    assert_everything_is_labelled(page)
    page.get_by_label("File").first.set_input_files(str(data))
    page.get_by_role("button", name="Upload dataset").click()
    expect(page.locator("#dataset-upload-message")).to_contain_text(
        "Choose the format"
    )  # checked before sending
    expect(page.locator("#dataset-format")).to_have_attribute("aria-invalid", "true")
    page.locator("#dataset-format").select_option("npz")
    page.get_by_role("button", name="Upload dataset").click()
    expect(page.locator("#dataset-upload-message")).to_contain_text("Uploaded tiny-digits.npz")
    row = page.locator("#datasets-table tbody tr").first
    expect(row).to_contain_text("60 samples, 3 classes")
    dataset_id = row.get_attribute("data-id")
    shot(page, artifacts_dir, "10-datasets", full_page=False)

    model_zip = tmp_path / "tiny-llama.zip"
    model_zip.write_bytes(zip_of(hand_made_model()))
    page.locator("#model-file").set_input_files(str(model_zip))
    page.get_by_role("button", name="Upload model").click()
    expect(page.locator("#model-upload-message")).to_contain_text("Uploaded tiny-llama.zip (huggingface")
    expect(page.locator("#hf-models-table tbody tr").first).to_contain_text(
        "llama, 4 parameters, tasks: causal-lm"
    )
    model_id = page.locator("#hf-models-table tbody tr").first.get_attribute("data-id")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="New job").click()
    expect(page.locator("#f-dataset-path")).to_be_hidden()  # only for sources that read an upload
    page.locator("#f-dataset-source").select_option("npz")
    expect(page.locator("#f-dataset-path")).to_be_visible()
    page.locator("#f-dataset-path").select_option(dataset_id)
    page.locator("#f-model-architecture").select_option("mlp")
    expect(page.locator("#request-preview")).to_contain_text(f'"path": "{dataset_id}"')
    expect(page.locator("#f-model-path")).to_be_hidden()  # only for Hugging Face models
    page.locator("#f-model-source").select_option("huggingface")
    expect(page.locator("#f-model-architecture")).to_be_hidden()
    page.locator("#f-model-path").select_option(model_id)
    expect(page.locator("#request-preview")).to_contain_text(f'"path": "{model_id}"')


def test_a_measured_speedup_report_is_charted_against_no_gain(
    page: Page, server: Server, artifacts_dir: Path
) -> None:
    """The report's GPU form (sparse timings and speedups; synthetic numbers, published beside the
    cancelled job), which a CPU machine cannot measure."""
    job_id, tiny = server.notes.get("cancelled_id"), server.notes.get("job_id")
    if job_id is None or tiny is None:
        pytest.skip("needs the jobs of the earlier tests")
    with api(server) as client:
        layers = client.get(f"/v1/jobs/{tiny}/artifacts/manifest.json").json()["layers"]
    _publish_speedup_report(server, job_id, layers)

    page.goto(f"{server.link}#/jobs/{job_id}")
    expect(page.locator("#speedup-report")).to_be_visible()
    expect(page.locator("#speedup-verdict")).to_have_text("keep the sparse layers")
    chart = page.locator("#speedup-section figure.chart").first
    expect(chart.locator("figcaption")).to_contain_text("Measured speedup per layer")
    expect(chart).to_contain_text("1× (no gain)")
    expect(chart.locator("svg rect")).to_have_count(len(layers))
    expect(page.locator("#speedup-layers tbody tr").first).to_contain_text("1.25×")
    expect(page.locator("#speedup-e2e")).to_contain_text("1.11×")
    expect(page.locator("#speedup-section img.report-chart")).to_be_visible()
    page.locator("#open-report-page").click()
    expect(page.frame_locator("iframe.report-frame").locator("h1")).to_have_text("Speedup report page")
    expect(page.locator("#open-report-page")).to_have_attribute("aria-expanded", "true")
    page.locator("#speedup-section").screenshot(path=str(artifacts_dir / "11-speedup-measured.png"))


def test_a_transformers_layer_table_shows_the_first_rows_and_filters_by_name(
    page: Page, server: Server, artifacts_dir: Path
) -> None:
    """A Llama-class manifest (hundreds of layers, Conv1D-style layouts too) stays readable: the first rows,
    a "Show all" toggle, and a name filter that takes plain text or shell-style globs."""
    job_id = server.notes.get("cancelled_id")
    if job_id is None:
        pytest.skip("needs the job of the cancel test")
    projections = ("self_attn.q_proj", "self_attn.k_proj", "mlp.up_proj", "mlp.down_proj")
    layers = [
        {
            "name": f"model.layers.{block}.{projection}",
            "kind": "Linear",
            "shape": [64, 32],
            "layout": "out_in",
            "group_direction": "rows",
            "density": 0.5,
            "nonzeros": 1024,
            "verified_nm": True,
            "violating_groups": 0,
        }
        for block in range(30)
        for projection in projections
    ]
    manifest = {"layers": layers, "skipped": [], "totals": {}, "pattern": {"text": "2:4"}, "verified": True}
    _publish_artifacts(server, job_id, [("manifest.json", json.dumps(manifest).encode(), "application/json")])

    page.goto(f"{server.link}#/jobs/{job_id}")
    rows = page.locator("#layers-table tbody tr")
    expect(rows).to_have_count(120)
    expect(page.locator("#layers-table tbody tr:visible")).to_have_count(40)
    expect(page.locator(".layers-controls [role=status]")).to_have_text("Showing 40 of 120 layers.")
    page.locator("#layers-toggle").click()
    expect(page.locator("#layers-table tbody tr:visible")).to_have_count(120)
    page.locator("#layers-filter").fill("*.2?.mlp.*")
    expect(page.locator("#layers-table tbody tr:visible")).to_have_count(20)
    expect(page.locator("#layers-table tbody tr:visible").first).to_contain_text(
        "model.layers.20.mlp.up_proj"
    )
    page.locator("#layers-filter").fill("q_proj")
    expect(page.locator("#layers-table tbody tr:visible")).to_have_count(30)
    expect(page.locator(".layers-controls [role=status]")).to_have_text(
        "Showing 30 of 120 layers (30 match)."
    )
    expect(rows.first.locator("td").nth(2)).to_have_text("rows (out_in)")
    assert_everything_is_labelled(page)
    page.locator("#layers-section").screenshot(path=str(artifacts_dir / "12-many-layers.png"))


def test_a_job_whose_model_did_not_learn_is_flagged_on_its_page_and_in_the_list(
    page: Page, server: Server, artifacts_dir: Path
) -> None:
    stuck = {  # dense at a tiny lr: nothing moves, the job still succeeds
        "name": "stuck mlp",
        "model": {"architecture": "mlp"},
        "dataset": {"source": "digits", "limit": 600},
        "sparsity": {"method": "dense", "n": 1, "m": 4},
        "train": {"epochs": 2, "batch_size": 64, "lr": 1e-6},
        "benchmark": {"enabled": False},
    }
    with api(server) as client:
        response = client.post("/v1/jobs", json=stuck)
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]

    page.goto(f"{server.link}#/jobs/{job_id}")
    expect(page.locator("#job-state [data-state=succeeded]")).to_be_visible(timeout=90_000)
    expect(page.locator("#job-state [data-warning=did_not_learn]")).to_have_text("did not learn")
    warning = page.locator("#job-warnings [data-warning=did_not_learn]")
    expect(warning).to_contain_text("Warning: did not learn")
    expect(warning).to_contain_text("try a higher train.lr")
    shot(page, artifacts_dir, "12-job-did-not-learn")

    page.goto(f"{server.link}#/jobs")
    row = page.locator("#jobs-table tr", has_text="stuck mlp")
    expect(row.locator("[data-warning=did_not_learn]")).to_have_text("did not learn")
