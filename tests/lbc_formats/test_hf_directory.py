"""A Hugging Face model directory is checked as data: the files it may hold, its weights' headers and shards,
its tokenizer and side files; pickles, programs and code are refused whatever their name."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import pytest

from lbc_formats.errors import FormatError
from lbc_formats.hf_directory import ModelDirLimits, check_model_dir, check_model_files
from tests.hf_models import (
    TINY_BERT,
    TINY_LLAMA,
    directory_files,
    hand_made_model,
    safetensors_of,
    save_tiny_model,
    tokenizer_json,
    write_files,
)


class _Item:
    def __init__(self, name: str, data: bytes) -> None:
        self.parts = tuple(name.split("/"))
        self.size = len(data)
        self._data = data

    def open(self):  # type: ignore[no-untyped-def]
        import io

        return io.BytesIO(self._data)


def _check(files: dict[str, bytes], **limits: int):  # type: ignore[no-untyped-def]
    return check_model_files([_Item(n, d) for n, d in files.items()], ModelDirLimits(**limits))


def test_a_saved_llama_is_described_by_its_real_parameter_count(tmp_path: Path) -> None:
    import transformers

    save_tiny_model(tmp_path)
    info = check_model_dir(tmp_path)
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    # save_pretrained drops the tied LM head; the count is what the files hold.
    assert info.parameter_count == sum(p.numel() for p in model.parameters())
    assert info.model_type == "llama"
    assert info.tasks == ("causal-lm", "sequence-classification")
    assert info.weights == ("model.safetensors",)
    assert set(info.files) == {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"}
    assert info.tensors["model.embed_tokens.weight"] == ("F32", (64, 32))
    assert info.total_bytes == sum(f.stat().st_size for f in tmp_path.iterdir())
    assert info.summary()["stripped_config_keys"] == list(info.stripped)


def test_sharded_weights_are_checked_against_their_index(tmp_path: Path) -> None:
    save_tiny_model(tmp_path, TINY_BERT, shard_bytes=25_000)
    info = check_model_dir(tmp_path)
    assert len(info.weights) > 1 and info.weights[0] == f"model-00001-of-{len(info.weights):05d}.safetensors"
    assert "model.safetensors.index.json" in info.files
    assert info.config.num_labels == 2
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert set(info.tensors) == set(index["weight_map"])


def test_an_archive_wrapper_folder_is_the_model_root_and_readme_is_ignored(tmp_path: Path) -> None:
    files = {f"mymodel/{n}": d for n, d in hand_made_model().items()}
    files["mymodel/README.md"] = b"# my model"
    files["mymodel/onnx/config.json"] = b"not json, but ignored: it is not the model's config"
    info = _check(files)
    assert info.root == ("mymodel",)
    assert info.files == ("config.json", "model.safetensors")
    assert info.ignored == ("mymodel/README.md", "mymodel/onnx/config.json")


def test_a_finder_zip_with_a_macos_resource_folder_finds_the_model_folder() -> None:
    files = {f"mymodel/{n}": d for n, d in hand_made_model().items()}
    files["__MACOSX/mymodel/._config.json"] = b"\x00\x05\x16\x07 resource fork"
    files[".DS_Store"] = b"Bud1"
    info = _check(files)
    assert info.root == ("mymodel",)
    assert info.ignored == (".DS_Store", "__MACOSX/mymodel/._config.json")


def _shards(tmp_path: Path) -> Path:
    save_tiny_model(tmp_path, TINY_BERT, shard_bytes=25_000)
    return tmp_path


def _index(directory: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((directory / "model.safetensors.index.json").read_text())


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda d: (d / "model-00002-of-00003.safetensors").unlink(), "do not form one complete set"),
        (lambda d: (d / "model.safetensors.index.json").unlink(), "without model.safetensors.index.json"),
        (
            lambda d: (d / "model.safetensors.index.json").write_text(
                json.dumps(
                    {
                        "weight_map": {
                            **_index(d)["weight_map"],
                            "extra.weight": "model-00001-of-00003.safetensors",
                        }
                    }
                )
            ),
            "lists tensor 'extra.weight', which no shard holds",
        ),
        (
            lambda d: (d / "model.safetensors.index.json").write_text(
                json.dumps(
                    {
                        "weight_map": {
                            k: "../../etc/model-00001-of-00003.safetensors" for k in _index(d)["weight_map"]
                        }
                    }
                )
            ),
            "is not a shard file name",
        ),
        (
            lambda d: (d / "model.safetensors.index.json").write_text(
                json.dumps(
                    {"weight_map": {k: "model-00001-of-00003.safetensors" for k in _index(d)["weight_map"]}}
                )
            ),
            "does not match the shard files",
        ),
        (
            lambda d: (d / "model.safetensors").write_bytes(safetensors_of({"w": ("F32", [1], bytes(4))})),
            "both model.safetensors and sharded weights",
        ),
    ],
)
def test_a_broken_shard_set_names_its_problem(tmp_path: Path, break_it, message: str) -> None:  # type: ignore[no-untyped-def]
    directory = _shards(tmp_path)
    assert len(list(directory.glob("model-*.safetensors"))) == 3
    break_it(directory)
    with pytest.raises(FormatError, match=message):
        check_model_dir(directory)


def test_a_tensor_in_the_wrong_shard_is_refused(tmp_path: Path) -> None:
    directory = _shards(tmp_path)
    index = _index(directory)
    name = next(k for k, v in index["weight_map"].items() if v.startswith("model-00001"))
    index["weight_map"][name] = "model-00002-of-00003.safetensors"
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(FormatError, match=f"tensor '{name}' is in model-00001-of-00003.safetensors but"):
        check_model_dir(directory)


class _Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (print, ("pwned",))


PICKLE = pickle.dumps({"w": _Evil()}, protocol=4)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            hand_made_model(**{"pytorch_model.bin": PICKLE}),
            r"pytorch_model.bin is refused: PyTorch .bin weights: a .bin is a pickle",
        ),
        (hand_made_model(**{"weights.pt": b"x"}), "weights.pt is refused: a .pt file is a pickle"),
        (hand_made_model(**{"extra/state.pth": b"x"}), "extra/state.pth is refused"),
        (
            hand_made_model(**{"program.pt2": b"PK\x03\x04"}),
            "a .pt2 exported program can run code when it is loaded",
        ),
        (
            hand_made_model(**{"modeling_evil.py": b"import os"}),
            "modeling_evil.py is refused: Python source is code",
        ),
        (hand_made_model(**{"tf_model.h5": b"\x89HDF"}), "HDF5 weights"),
        (hand_made_model(**{"flax_model.msgpack": b"\x80"}), "Flax msgpack"),
        (
            hand_made_model(**{"notes.txt": PICKLE}),
            "notes.txt is refused: its content is a pickle \\(protocol 4\\)",
        ),
        (hand_made_model(**{"tokenizer.json": PICKLE}), "tokenizer.json is refused: its content is a pickle"),
        (
            hand_made_model(**{"model.safetensors": PICKLE}),
            "model.safetensors is refused: its content is a pickle",
        ),
        (hand_made_model(**{"data.zip.renamed": b"PK\x03\x04rest"}), "its content is a zip archive"),
        (hand_made_model(**{"model.safetensors": b"PK\x03\x04" + bytes(64)}), "its content is a zip archive"),
        (hand_made_model(**{"libevil.txt": b"\x7fELF\x02\x01"}), "is an executable or shared library"),
        (hand_made_model(**{"tokenizer.json": b"{not json"}), "tokenizer.json is not valid JSON"),
        (
            hand_made_model(**{"tokenizer.json": b'{"model": {"type": "Evil"}}'}),
            "needs a 'model' object whose type",
        ),
        (
            hand_made_model(**{"tokenizer.json": b'{"model": {"type": "BPE"}, "loader": "x"}'}),
            "top-level keys a tokenizers file does not have: loader",
        ),
        (
            hand_made_model(**{"tokenizer.json": b"[" * 100_000 + b"]" * 100_000}),
            "tokenizer.json nests 100000 levels deep",
        ),
        (
            hand_made_model(**{"tokenizer_config.json": b'{"auto_map": {"AutoTokenizer": "x.Y"}}'}),
            "tokenizer_config.json has keys the server refuses: auto_map",
        ),
        (hand_made_model(**{"generation_config.json": b'{"custom_generate": "repo"}'}), "custom_generate"),
        (
            hand_made_model(**{"preprocessor_config.json": b'{"trust_remote_code": true}'}),
            "trust_remote_code",
        ),
        (hand_made_model(**{"vocab.txt": b"\xff\xfe"}), "vocab.txt is not UTF-8 text"),
        (
            hand_made_model(**{"config.json": b'{"model_type": "llama", "auto_map": {"AutoModel": "m.M"}}'}),
            "auto_map",
        ),
        (
            hand_made_model(**{"config.json": b'{"model_type": "evilnet"}'}),
            "'evilnet' is not an allowed architecture",
        ),
        (
            hand_made_model(**{"config.json": json.dumps({**TINY_LLAMA, "vocab_size": 10**12}).encode()}),
            "vocab_size must be an integer",
        ),
        ({"model.safetensors": safetensors_of({"w": ("F32", [1], bytes(4))})}, "no config.json"),
        ({"config.json": json.dumps(TINY_LLAMA).encode()}, "no weights: expected model.safetensors"),
        (
            hand_made_model(**{"model.safetensors": safetensors_of({"w": ("F32", [2, 3], bytes(16))})}),
            r"F32 \[2, 3\] needs 24 bytes but data_offsets span 16",
        ),
        (
            hand_made_model(
                **{"model.safetensors": safetensors_of({"w": ("F32", [1 << 30, 1 << 30], bytes(16))})}
            ),
            "declares 1152921504606846976 elements, over the limit",
        ),
        (
            hand_made_model(**{"model.safetensors": safetensors_of({"w": ("F8_E4M3", [4], bytes(4))})}),
            "quantized tensors",
        ),
        (
            hand_made_model(
                **{
                    "model.safetensors": safetensors_of(
                        {"w": ("F32", [1], bytes(4))}, {"__metadata__": {"a": 1}}
                    )
                }
            ),
            "__metadata__ must map strings to strings",
        ),
        (
            hand_made_model(**{"model.safetensors": safetensors_of({"w": ("F32", [1], bytes(4))}) + b"tail"}),
            "data section is 8 bytes but the tensors cover 4",
        ),
        (
            hand_made_model(**{"model.safetensors": struct.pack("<Q", 1 << 40) + b"{}"}),
            "header length 1099511627776 does not fit",
        ),
    ],
)
def test_a_hostile_or_broken_model_is_refused_naming_the_file_and_why(
    files: dict[str, bytes], message: str
) -> None:
    with pytest.raises(FormatError, match=message):
        _check(files)


def test_the_model_size_limit_names_the_setting() -> None:
    with pytest.raises(FormatError, match=r"over the limit of 100 .*LBC_MAX_MODEL_BYTES"):
        _check(hand_made_model(), max_total_bytes=100)


def test_a_link_in_a_model_directory_is_refused(tmp_path: Path) -> None:
    write_files(tmp_path, hand_made_model())
    (tmp_path / "tokenizer.json").symlink_to("/etc/passwd")
    with pytest.raises(FormatError, match=r"tokenizer.json is a symbolic link"):
        check_model_dir(tmp_path)


def test_a_real_tokenizer_json_and_side_files_pass(tmp_path: Path) -> None:
    files = hand_made_model(
        **{
            "tokenizer.json": tokenizer_json().encode(),
            "tokenizer_config.json": b'{"model_max_length": 64}',
            "special_tokens_map.json": b'{"unk_token": "[UNK]"}',
            "vocab.txt": b"a\nb\n",
            ".gitattributes": b"*.safetensors filter=lfs",
            "LICENSE": b"MIT",
        }
    )
    info = check_model_dir(write_files(tmp_path, files))
    assert info.ignored == (".gitattributes", "LICENSE")
    assert "tokenizer.json" in info.files and "vocab.txt" in info.files
    assert directory_files(tmp_path).keys() == files.keys()
