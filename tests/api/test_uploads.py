"""Dataset and checkpoint uploads: streamed, size-limited, validated without torch or unpickling, stored.

The files are built here (torch may be imported by tests, never by the API) and the real MNIST test set
from ``shared/data`` is uploaded as an archive.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import stat
import struct
import tarfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from jobs import repository
from jobs.db import transaction
from jobs.models import Job, Owner
from jobs.uploads import UploadInvalid, UploadLimits, scan_torch_pickle, validate_checkpoint
from tests.api.conftest import AppFactory, Caller, Service, digits_spec

MNIST_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist-t10k"


# -- builders -----------------------------------------------------------------------------------------


def npz_bytes(n: int = 20, classes: int = 4, **arrays: Any) -> bytes:
    rng = np.random.default_rng(0)
    values: dict[str, Any] = {
        "x": rng.integers(0, 255, size=(n, 8, 8), dtype=np.uint8),
        "y": np.arange(n) % classes,
    }
    values.update(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **values)
    return buffer.getvalue()


def idx(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims) + payload


def zip_bytes(members: dict[str, bytes], *, symlinks: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name in symlinks:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def tar_gz_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def png(color: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (6, 5), color).save(buffer, format="PNG")
    return buffer.getvalue()


def mnist_zip(images: int = 12, labels: int = 12) -> bytes:
    return zip_bytes(
        {
            "digits/train-images-idx3-ubyte": idx(2051, (images, 8, 8), bytes(images * 64)),
            "digits/train-labels-idx1-ubyte": idx(2049, (labels,), bytes(i % 10 for i in range(labels))),
        }
    )


def torch_checkpoint(tmp_path: Path) -> bytes:
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    path = tmp_path / "dense.pt"
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, path)
    return path.read_bytes()


class _Evil:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


def evil_checkpoint(marker: Path, protocol: int = 2) -> bytes:
    payload = pickle.dumps({"weight": _Evil(f"touch {marker}")}, protocol=protocol)
    return zip_bytes({"ckpt/data.pkl": payload, "ckpt/version": b"3\n", "ckpt/byteorder": b"little"})


# -- helpers ------------------------------------------------------------------------------------------


def upload(service: Service, caller: Caller, kind: str, filename: str, data: bytes, **fields: str) -> Any:
    return service.client.post(
        f"/v1/{kind}",
        files={"file": (filename, data, "application/octet-stream")},
        data=fields,
        headers=caller.headers,
    )


def problem(response: Any) -> str:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    message: str = error["details"][0]["message"]
    return message


# -- datasets -----------------------------------------------------------------------------------------


def test_npz_upload_is_validated_stored_and_listed(service: Service) -> None:
    alice, bob = service.caller("alice"), service.caller("bob")
    data = npz_bytes()
    response = upload(service, alice, "datasets", "../../My Digits!.npz", data, format="npz", name="digits")
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert (dataset["format"], dataset["name"], dataset["size"]) == ("npz", "digits", len(data))
    assert dataset["sha256"] == hashlib.sha256(data).hexdigest()
    assert dataset["filename"] == "My_Digits.npz"
    assert dataset["summary"] == {
        "samples": 20,
        "num_classes": 4,
        "input_shape": [1, 8, 8],
        "x_dtype": "uint8",
    }
    assert service.store.read_bytes(f"datasets/{dataset['id']}/My_Digits.npz") == data
    assert list((service.settings.home / "tmp").iterdir()) == []  # the temporary file is gone

    listed = service.client.get("/v1/datasets", headers=alice.headers).json()["items"]
    assert [d["id"] for d in listed] == [dataset["id"]]
    assert service.client.get(f"/v1/datasets/{dataset['id']}", headers=alice.headers).json() == dataset
    assert service.client.get("/v1/datasets", headers=bob.headers).json()["items"] == []
    assert service.client.get(f"/v1/datasets/{dataset['id']}", headers=bob.headers).status_code == 404
    assert service.client.delete(f"/v1/datasets/{dataset['id']}", headers=bob.headers).status_code == 404


def test_the_real_mnist_test_set_as_an_archive_feeds_a_job(service: Service) -> None:
    assert MNIST_DIR.is_dir(), f"{MNIST_DIR} is missing: the real MNIST set lives in ../shared/data"
    alice = service.caller()
    members = {f"mnist-t10k/{p.name}": p.read_bytes() for p in sorted(MNIST_DIR.glob("*.gz"))}
    response = upload(service, alice, "datasets", "mnist.tar.gz", tar_gz_bytes(members), format="mnist")
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["filename"] == "mnist.tar.gz"
    summary = dataset["summary"]
    assert (summary["samples"], summary["num_classes"], summary["input_shape"]) == (10_000, 10, [1, 28, 28])
    assert summary["root"] == "mnist-t10k" and list(summary["splits"]) == ["t10k"]

    spec = digits_spec(dataset={"source": "mnist", "path": dataset["id"], "split": "t10k", "limit": 1000})
    job = service.client.post("/v1/jobs", json=spec, headers=alice.headers)
    assert job.status_code == 201, job.text
    assert job.json()["dataset_id"] == dataset["id"]

    wrong_split = digits_spec(dataset={"source": "mnist", "path": dataset["id"], "split": "train"})
    response = service.client.post("/v1/jobs", json=wrong_split, headers=alice.headers)
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {
            "field": "dataset.split",
            "message": f"dataset {dataset['id']} has no split 'train' (available: t10k)",
        }
    ]
    too_few_classes = digits_spec(
        model={"architecture": "lenet5", "args": {"num_classes": 5}},
        dataset={"source": "mnist", "path": dataset["id"]},
    )
    response = service.client.post("/v1/jobs", json=too_few_classes, headers=alice.headers)
    assert response.json()["error"]["details"][0]["field"] == "model.args.num_classes"


def test_job_references_must_be_own_uploads_of_the_right_format(service: Service) -> None:
    alice, bob = service.caller("alice"), service.caller("bob")
    alices = upload(service, alice, "datasets", "d.npz", npz_bytes(), format="npz").json()
    bobs = upload(service, bob, "datasets", "d.npz", npz_bytes(), format="npz").json()

    for_bob = digits_spec(model={"architecture": "mlp"}, dataset={"source": "npz", "path": alices["id"]})
    response = service.client.post("/v1/jobs", json=for_bob, headers=bob.headers)
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {"field": "dataset.path", "message": f"dataset {alices['id']} does not exist"}
    ]
    as_mnist = digits_spec(dataset={"source": "mnist", "path": bobs["id"], "val_path": "nope"})
    details = service.client.post("/v1/jobs", json=as_mnist, headers=bob.headers).json()["error"]["details"]
    assert details == [
        {"field": "dataset.path", "message": f"dataset {bobs['id']} is a npz upload, not mnist"},
        {"field": "dataset.val_path", "message": "dataset nope does not exist"},
    ]
    fine = digits_spec(
        model={"architecture": "mlp"}, dataset={"source": "npz", "path": bobs["id"], "val_path": bobs["id"]}
    )
    assert service.client.post("/v1/jobs", json=fine, headers=bob.headers).status_code == 201


def test_a_dataset_in_use_cannot_be_deleted_until_its_jobs_finish(service: Service) -> None:
    alice = service.caller()
    dataset = upload(service, alice, "datasets", "d.npz", npz_bytes(), format="npz").json()
    spec = digits_spec(model={"architecture": "mlp"}, dataset={"source": "npz", "path": dataset["id"]})
    job = service.submit(alice, spec)
    url = f"/v1/datasets/{dataset['id']}"

    busy = service.client.delete(url, headers=alice.headers)
    assert busy.status_code == 409
    assert busy.json()["error"]["details"] == {"jobs": [job["id"]]}

    service.client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice.headers)
    gone = service.client.delete(url, headers=alice.headers)
    assert gone.status_code == 204 and gone.content == b""
    assert service.client.get(url, headers=alice.headers).status_code == 404
    assert not service.store.exists(f"datasets/{dataset['id']}/d.npz")
    with transaction(service.sessions) as session:
        row = session.get(Job, job["id"])
        assert row is not None and row.dataset_id is None and row.spec["dataset"]["path"] == dataset["id"]


@pytest.mark.parametrize("service", ["sqlite", "postgres"], indirect=True)
def test_a_delete_racing_a_submit_sees_its_job_and_answers_409(service: Service) -> None:
    alice = service.caller()
    dataset = upload(service, alice, "datasets", "d.npz", npz_bytes(), format="npz").json()
    spec = digits_spec(model={"architecture": "mlp"}, dataset={"source": "npz", "path": dataset["id"]})
    url = f"/v1/datasets/{dataset['id']}"
    answers: dict[str, Any] = {}
    delete = threading.Thread(
        target=lambda: answers.update(delete=service.client.delete(url, headers=alice.headers))
    )
    with transaction(service.sessions) as session:  # a submit between its insert and its commit
        owner = session.get(Owner, alice.owner_id)
        assert owner is not None
        job, _ = repository.create_job(
            session, owner=owner, spec=spec, idempotency_key=None, max_attempts=3, max_active_jobs=100,
            summary={"method": "lbc", "pattern": "2:4", "architecture": "mlp", "queue": "cpu", "dataset_id": dataset["id"]},
        )  # fmt: skip
        delete.start()
        time.sleep(0.5)  # time for the delete to look for jobs using the dataset (it used to, and saw none)
    delete.join(timeout=60)
    # It used to delete the dataset under the new job (204; the job then failed in the worker).
    assert answers["delete"].status_code == 409, answers["delete"].text
    assert answers["delete"].json()["error"]["details"] == {"jobs": [job.id]}
    assert service.client.get(url, headers=alice.headers).status_code == 200


def test_imagefolder_and_cifar_archives(service: Service) -> None:
    alice = service.caller()
    images = zip_bytes(
        {
            "pets/cat/1.png": png(10),
            "pets/cat/2.png": png(20),
            "pets/dog/1.png": png(200),
            "pets/.DS_Store": b"junk",
            "__MACOSX/pets/._cat": b"junk",
        }
    )
    response = upload(service, alice, "datasets", "pets.zip", images, format="imagefolder")
    assert response.status_code == 201, response.text
    summary = response.json()["summary"]
    assert (summary["root"], summary["classes"], summary["samples"]) == ("pets", ["cat", "dog"], 3)
    assert summary["image_size"] == [5, 6]

    # A real (tiny) batch: the pickles are scanned for what they would import, so zeros do not pass.
    batch = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, protocol=2)
    names = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]
    cifar = tar_gz_bytes({f"cifar-10-batches-py/{name}": batch for name in names})
    response = upload(service, alice, "datasets", "cifar-10-python.tar.gz", cifar, format="cifar10")
    assert response.status_code == 201, response.text
    assert sorted(response.json()["summary"]["splits"]) == ["test", "train"]
    assert "must be uploaded as the CIFAR python .tar.gz" in problem(
        upload(service, alice, "datasets", "c.zip", zip_bytes({"batches.meta": batch}), format="cifar10")
    )
    assert "no 'meta'" in problem(upload(service, alice, "datasets", "c.tgz", cifar, format="cifar100"))


@pytest.mark.parametrize(
    ("filename", "data", "fmt", "message"),
    [
        ("evil.zip", zip_bytes({"../evil": b"x", "a/1.png": png(1)}), "imagefolder", "'..' path component"),
        ("abs.zip", zip_bytes({"/etc/cron.d/x": b"x"}), "mnist", "absolute path"),
        ("link.zip", zip_bytes({"a/1.png": png(1)}, symlinks=("b/2.png",)), "imagefolder", "symbolic link"),
        (
            "one.zip",
            zip_bytes({"only/1.png": png(1), "only/2.png": png(2)}),
            "imagefolder",
            "at least 2 class",
        ),
        (
            "fake.zip",
            zip_bytes({"a/1.png": png(1), "b/2.png": b"\xff\xd8\xff not a png"}),
            "imagefolder",
            "magic",
        ),
        ("count.zip", mnist_zip(images=12, labels=11), "mnist", "12 images but 11 labels"),
        ("nopair.zip", zip_bytes({"readme.txt": b"hi"}), "mnist", "no IDX image/label pair"),
        (
            "short.zip",
            zip_bytes(
                {
                    "t-images-idx3-ubyte": idx(2051, (5, 8, 8), bytes(10)),
                    "t-labels-idx1-ubyte": idx(2049, (5,), bytes(5)),
                }
            ),
            "mnist",
            "holds 10",
        ),
        ("objects.npz", npz_bytes(x=np.array([{"a": 1}] * 20, dtype=object)), "npz", "Python objects"),
        ("badlabels.npz", npz_bytes(y=-np.ones(20, dtype=np.int64)), "npz", "negative"),
        ("nox.npz", zip_bytes({"y.npy": b""}), "npz", "missing array 'x'"),
        ("plain.txt", b"hello", "npz", "not an .npz"),
        ("plain.txt", b"hello", "imagefolder", "expected a .zip or .tar"),
    ],
)
def test_bad_datasets_are_422_naming_the_problem(
    service: Service, filename: str, data: bytes, fmt: str, message: str
) -> None:
    alice = service.caller()
    response = upload(service, alice, "datasets", filename, data, format=fmt)
    assert message in problem(response)
    assert service.store.list("datasets") == []
    assert list((service.settings.home / "tmp").iterdir()) == []


def test_mnist_zip_of_raw_idx_files(service: Service) -> None:
    alice = service.caller()
    response = upload(service, alice, "datasets", "digits.zip", mnist_zip(), format="mnist")
    assert response.status_code == 201, response.text
    assert response.json()["summary"]["splits"] == {
        "train": {"samples": 12, "image_shape": [8, 8], "num_classes": 10}
    }


def test_upload_form_errors(service: Service) -> None:
    alice = service.caller()
    no_format = upload(service, alice, "datasets", "d.npz", npz_bytes())
    assert no_format.status_code == 422
    assert no_format.json()["error"]["details"][0]["field"] == "format"
    assert problem(upload(service, alice, "datasets", "d.npz", npz_bytes(), format="parquet")).startswith(
        "unknown dataset format"
    )
    not_multipart = service.client.post("/v1/datasets", json={"format": "npz"}, headers=alice.headers)
    assert not_multipart.status_code == 415
    assert not_multipart.json()["error"]["code"] == "unsupported_media_type"
    no_file = service.client.post("/v1/datasets", files={"format": (None, "npz")}, headers=alice.headers)
    assert "no 'file' file part" in problem(no_file)
    unauthenticated = service.client.post("/v1/datasets", files={"file": ("d.npz", b"x")})
    assert unauthenticated.status_code == 401
    # A field given twice used to be decided silently by the last copy (an npz checked as mnist).
    twice = service.client.post(
        "/v1/datasets",
        files=[("file", ("d.npz", npz_bytes())), ("format", (None, "npz")), ("format", (None, "mnist"))],
        headers=alice.headers,
    )
    assert problem(twice) == "form field 'format' is given twice"
    assert twice.json()["error"]["details"][0]["field"] == "format"
    assert service.store.list("datasets") == []


def test_oversized_uploads_are_413_and_leave_nothing_behind(app_factory: AppFactory) -> None:
    service = app_factory(max_upload_bytes=4096)
    alice = service.caller()
    response = upload(service, alice, "datasets", "big.npz", npz_bytes(n=200), format="npz")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert list((service.settings.home / "tmp").iterdir()) == []
    assert service.store.list("datasets") == []
    assert service.client.get("/v1/datasets", headers=alice.headers).json()["items"] == []
    small = upload(service, alice, "datasets", "small.npz", npz_bytes(n=10), format="npz")
    assert small.status_code == 201


# -- checkpoints --------------------------------------------------------------------------------------


def test_safetensors_checkpoint_upload_and_use(service: Service) -> None:
    from safetensors.numpy import save

    alice, bob = service.caller("alice"), service.caller("bob")
    data = save(
        {"features.0.weight": np.zeros((8, 1, 5, 5), np.float32), "classifier.bias": np.zeros(10, np.float16)}
    )
    response = upload(service, alice, "checkpoints", "dense.safetensors", data)
    assert response.status_code == 201, response.text
    checkpoint = response.json()
    assert checkpoint["format"] == "safetensors"
    assert (checkpoint["summary"]["tensor_count"], checkpoint["summary"]["parameter_count"]) == (2, 210)
    assert (
        service.client.get("/v1/checkpoints", headers=alice.headers).json()["items"][0]["id"]
        == checkpoint["id"]
    )

    spec = digits_spec(model={"architecture": "lenet5", "checkpoint": checkpoint["id"]})
    job = service.client.post("/v1/jobs", json=spec, headers=alice.headers)
    assert job.status_code == 201 and job.json()["checkpoint_id"] == checkpoint["id"]
    stolen = service.client.post("/v1/jobs", json=spec, headers=bob.headers)
    assert stolen.json()["error"]["details"] == [
        {"field": "model.checkpoint", "message": f"checkpoint {checkpoint['id']} does not exist"}
    ]
    assert service.client.get(f"/v1/checkpoints/{checkpoint['id']}", headers=bob.headers).status_code == 404
    url = f"/v1/checkpoints/{checkpoint['id']}"
    assert service.client.delete(url, headers=alice.headers).status_code == 409
    service.client.post(f"/v1/jobs/{job.json()['id']}/cancel", headers=alice.headers)
    assert service.client.delete(url, headers=alice.headers).status_code == 204

    broken = bytearray(data)
    broken[8:10] = b"[]"
    assert "header" in problem(upload(service, alice, "checkpoints", "x.safetensors", bytes(broken)))
    assert "data_offsets" in problem(upload(service, alice, "checkpoints", "x.safetensors", data[:-4]))


def test_torch_zip_checkpoint_is_accepted_without_being_loaded(service: Service, tmp_path: Path) -> None:
    alice = service.caller()
    response = upload(service, alice, "checkpoints", "dense.pt", torch_checkpoint(tmp_path), format="torch")
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["format"], body["filename"]) == ("torch", "dense.pt")
    assert body["summary"] == {"tensor_count": 4, "parameter_count": 8 * 4 + 4 + 4 * 2 + 2}


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_pickle_that_would_run_code_is_rejected_without_running_it(
    service: Service, tmp_path: Path, protocol: int
) -> None:
    alice = service.caller()
    marker = tmp_path / "pwned"
    response = upload(service, alice, "checkpoints", "evil.pt", evil_checkpoint(marker, protocol))
    message = problem(response)
    assert "forbidden global" in message and "system" in message
    assert not marker.exists()
    assert service.store.list("checkpoints") == []


@pytest.mark.parametrize(
    "global_name",
    [b"builtins\neval", b"posix\nsystem", b"subprocess\nPopen", b"torch\nload", b"__builtin__\n__import__"],
)
def test_the_pickle_scanner_names_forbidden_globals(global_name: bytes) -> None:
    payload = b"\x80\x02c" + global_name + b"\n)R."
    with pytest.raises(UploadInvalid, match="forbidden global"):
        scan_torch_pickle(payload)


def test_the_pickle_scanner_rejects_unresolvable_and_exotic_imports(tmp_path: Path) -> None:
    # STACK_GLOBAL with a computed (not literal) module name cannot be checked statically.
    computed = b"\x80\x04N\x8c\x06system\x93."
    with pytest.raises(UploadInvalid, match="cannot be resolved"):
        scan_torch_pickle(computed)
    with pytest.raises(UploadInvalid, match="INST"):
        scan_torch_pickle(b"(iposix\nsystem\n.")
    with pytest.raises(UploadInvalid, match="not a torch zip"):
        path = tmp_path / "legacy.pt"
        path.write_bytes(pickle.dumps({"a": 1}, protocol=2))
        validate_checkpoint(path, "torch")


def test_the_pickle_scanner_bounds_its_opcodes_and_nesting() -> None:
    small = UploadLimits(max_pickle_ops=100, max_pickle_depth=4)
    scan_torch_pickle(b"\x80\x02" + b"N0" * 49 + b".", small)  # 100 opcodes with PROTO and STOP
    with pytest.raises(UploadInvalid, match="more than 100 opcodes"):
        scan_torch_pickle(b"\x80\x02" + b"N0" * 50 + b".", small)
    scan_torch_pickle(b"\x80\x02((((t" + b"t" * 3 + b"0.", small)
    with pytest.raises(UploadInvalid, match="nests more than 4 levels deep"):
        scan_torch_pickle(b"\x80\x02(((((", small)


def test_a_safetensors_header_over_the_size_limit_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    path = tmp_path / "w.safetensors"
    save_file({f"w{i}": np.ones(2, np.float32) for i in range(40)}, str(path))
    assert validate_checkpoint(path).summary["tensor_count"] == 40
    with pytest.raises(UploadInvalid, match=r"header length \d+ is over the limit of 256 bytes"):
        validate_checkpoint(path, limits=UploadLimits(max_safetensors_header=256))
    with pytest.raises(UploadInvalid, match="lists 40 tensors, over the limit of 39"):
        validate_checkpoint(path, limits=UploadLimits(max_tensors=39))


def test_a_job_whose_checkpoint_holds_none_of_the_models_weights_is_refused_at_submit(
    service: Service, tmp_path: Path
) -> None:
    from safetensors.numpy import save

    alice = service.caller()
    foreign = save({"encoder.layer.0.weight": np.zeros((4, 4), np.float32)})
    checkpoint = upload(service, alice, "checkpoints", "bert.safetensors", foreign).json()["id"]
    spec = digits_spec(model={"architecture": "lenet5", "checkpoint": checkpoint})
    response = service.client.post("/v1/jobs", json=spec, headers=alice.headers)
    assert response.status_code == 422, response.text
    (problem_,) = response.json()["error"]["details"]
    assert problem_["field"] == "model.checkpoint"
    assert f"checkpoint {checkpoint} holds none of lenet5's weights" in problem_["message"]
    assert "expected names like features.0.weight, found encoder.layer.0.weight" in problem_["message"]
    # With a structural argument the catalog cannot name the layers: the worker checks that case.
    mlp = digits_spec(model={"architecture": "mlp", "args": {"hidden_sizes": [32]}, "checkpoint": checkpoint})
    assert service.client.post("/v1/jobs", json=mlp, headers=alice.headers).status_code == 201
    # Torch uploads record no tensor names: also left to the worker, which names what is missing.
    torch_id = upload(service, alice, "checkpoints", "dense.pt", torch_checkpoint(tmp_path)).json()["id"]
    lenet = digits_spec(model={"architecture": "lenet5", "checkpoint": torch_id})
    assert service.client.post("/v1/jobs", json=lenet, headers=alice.headers).status_code == 201


def test_the_api_validates_uploads_without_importing_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    from safetensors.numpy import save_file

    save_file({"w": np.ones((4, 4), np.float32)}, str(tmp_path / "w.safetensors"))
    (tmp_path / "d.npz").write_bytes(npz_bytes())
    code = (
        "import sys; from pathlib import Path; import api.app\n"
        "from jobs.uploads import validate_checkpoint, validate_dataset\n"
        f"validate_checkpoint(Path({str(tmp_path / 'w.safetensors')!r}))\n"
        f"validate_dataset(Path({str(tmp_path / 'd.npz')!r}), 'npz')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
