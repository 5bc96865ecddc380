"""Cost of checking an uploaded Hugging Face model (lbc_formats.hf_directory) against the cost of receiving it.

The API's check reads headers and JSON side files, and scans the weights' values once for NaN and infinity
(numpy), so it should cost about what hashing the upload costs (paid anyway while receiving it); the
worker's check of the extracted directory reads headers only and should stay flat as the weights grow.
Prints, per weight size: the upload's sha256 time, the API's check of the zip and of the tar.gz, and the
worker's check of the extracted directory; then a large tokenizer.json's JSON check.
Usage: python benchmarks/model_intake.py [--sizes 16 64 256] (MiB of weights)
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import struct
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobs.uploads import validate_model
from lbc_formats.hf_directory import check_model_dir
from lbc_formats.json_data import load_json_data

CONFIG = {"model_type": "llama", "hidden_size": 1024, "num_hidden_layers": 8, "vocab_size": 32000}


def write_model(directory: Path, weight_bytes: int, tensors: int = 64) -> None:
    """A model directory with ``tensors`` float32 matrices totalling about ``weight_bytes``."""
    per = max(4096, weight_bytes // tensors) // 4096 * 4096
    header: dict[str, Any] = {}
    offset = 0
    for i in range(tensors):
        header[f"model.layers.{i}.mlp.up_proj.weight"] = {
            "dtype": "F32",
            "shape": [per // 4096, 1024],
            "data_offsets": [offset, offset + per],
        }
        offset += per
    raw = json.dumps(header).encode()
    with (directory / "model.safetensors").open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset)  # zeros, written sparsely
    (directory / "config.json").write_text(json.dumps(CONFIG))


def timed(run: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def sha256(path: Path) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256], help="MiB of weights")
    args = parser.parse_args()
    print(f"{'weights':>8} {'sha256 of zip':>14} {'check zip':>10} {'check tar.gz':>13} {'check dir':>10}")
    for mib in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            model = root / "model"
            model.mkdir()
            write_model(model, mib << 20)
            archive_zip, archive_tar = root / "m.zip", root / "m.tar.gz"
            with zipfile.ZipFile(archive_zip, "w") as zf:
                for path in model.iterdir():
                    zf.write(path, f"model/{path.name}")
            with tarfile.open(archive_tar, "w:gz", compresslevel=1) as tf:
                tf.add(model, "model")
            hashing = timed(functools.partial(sha256, archive_zip))
            check_zip = timed(functools.partial(validate_model, archive_zip))
            check_tar = timed(functools.partial(validate_model, archive_tar), 1)
            check_dir = timed(functools.partial(check_model_dir, model))
            print(
                f"{mib:>5} MiB {hashing * 1e3:>11.1f} ms {check_zip * 1e3:>7.1f} ms "
                f"{check_tar * 1e3:>10.1f} ms {check_dir * 1e3:>7.1f} ms"
            )
    merges = [[f"a{i}", f"b{i}"] for i in range(200_000)]
    vocab = {f"t{i}": i for i in range(200_000)}
    tokenizer = json.dumps(
        {"version": "1.0", "model": {"type": "BPE", "vocab": vocab, "merges": merges}}
    ).encode()
    seconds = timed(
        lambda: load_json_data(tokenizer, what="tokenizer.json", max_bytes=64 << 20, max_depth=32)
    )
    parsed = timed(lambda: json.loads(tokenizer))
    print(
        f"tokenizer.json of {len(tokenizer) / 2**20:.1f} MiB (200k vocab, 200k merges): bounded check "
        f"{seconds * 1e3:.0f} ms, of which json.loads {parsed * 1e3:.0f} ms"
    )


if __name__ == "__main__":
    main()
