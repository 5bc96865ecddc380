import shutil
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lbc_core.data import ArchiveLimits, DatasetError, load_image_folder

GRAY_8 = (8, 8, "L", "png")


def test_directory_with_sorted_classes(tmp_path: Path, image_tree: Callable) -> None:
    root = image_tree(tmp_path / "d", {"zebra": [GRAY_8] * 2, "ant": [GRAY_8] * 3})
    ds = load_image_folder(root)
    assert ds.classes == ["ant", "zebra"]
    assert ds.x.shape == (5, 1, 8, 8) and ds.y.tolist() == [0, 0, 0, 1, 1]
    expected = np.asarray(Image.open(root / "ant" / "img_001.png"), dtype=np.float32) / 255
    assert torch.allclose(ds.x[1, 0], torch.from_numpy(expected))


def test_mixed_modes_become_rgb_and_formats_decode(tmp_path: Path, image_tree: Callable) -> None:
    root = image_tree(
        tmp_path / "d",
        {"a": [(8, 8, "L", "png"), (8, 8, "RGB", "jpg")], "b": [(8, 8, "RGB", "bmp"), (8, 8, "L", "jpeg")]},
    )
    ds = load_image_folder(root)
    assert ds.x.shape == (4, 3, 8, 8)
    # A grayscale image converted to RGB has three equal channels.
    assert torch.equal(ds.x[0, 0], ds.x[0, 1]) and torch.equal(ds.x[0, 1], ds.x[0, 2])


def test_size_of_first_image_or_given_size(tmp_path: Path, image_tree: Callable) -> None:
    root = image_tree(
        tmp_path / "d", {"a": [(10, 6, "RGB", "png"), (20, 20, "RGB", "png")], "b": [(7, 7, "RGB", "png")]}
    )
    assert load_image_folder(root).x.shape == (3, 3, 6, 10)
    assert load_image_folder(root, image_size=5).x.shape == (3, 3, 5, 5)
    assert load_image_folder(root, image_size=(4, 9), mode="L").x.shape == (3, 1, 4, 9)


def test_hidden_and_non_image_files_are_ignored(tmp_path: Path, image_tree: Callable) -> None:
    root = image_tree(tmp_path / "d", {"a": [GRAY_8], "b": [GRAY_8]})
    (root / "a" / "notes.txt").write_text("ignored")
    (root / "a" / ".DS_Store").write_bytes(b"\x00")
    (root / ".hidden").mkdir()
    (root / "README.md").write_text("ignored")
    (root / "b" / "nested").mkdir()
    shutil.copy(root / "b" / "img_000.png", root / "b" / "nested" / "more.PNG")
    ds = load_image_folder(root)
    assert ds.classes == ["a", "b"] and ds.class_counts() == [1, 2]


def _archive(kind: str, source: Path, target: Path, prefix: str = "") -> Path:
    files = sorted(p for p in source.rglob("*") if p.is_file())
    if kind == "zip":
        with zipfile.ZipFile(target, "w") as zf:
            for f in files:
                zf.write(f, prefix + f.relative_to(source).as_posix())
    else:
        with tarfile.open(target, "w:gz" if target.name.endswith(("gz", "tgz")) else "w") as tf:
            for f in files:
                tf.add(f, prefix + f.relative_to(source).as_posix())
    return target


@pytest.mark.parametrize("name", ["set.zip", "set.tar", "set.tar.gz", "set.tgz"])
def test_archives_with_and_without_wrapper_directory(tmp_path: Path, image_tree: Callable, name: str) -> None:
    root = image_tree(tmp_path / "d", {"cat": [GRAY_8] * 2, "dog": [GRAY_8]})
    expected = load_image_folder(root)
    kind = "zip" if name.endswith("zip") else "tar"
    scratch = tmp_path / "scratch"
    for prefix in ("", "dataset/"):
        archive = _archive(kind, root, tmp_path / f"{prefix.strip('/')}{name}", prefix)
        ds = load_image_folder(archive, scratch_dir=scratch)
        assert ds.classes == ["cat", "dog"] and torch.equal(ds.x, expected.x)
    assert list(scratch.iterdir()) == []  # extraction is cleaned up


def test_single_class_is_not_mistaken_for_a_wrapper(tmp_path: Path, image_tree: Callable) -> None:
    root = image_tree(tmp_path / "d", {"only": [GRAY_8]})
    assert load_image_folder(root).classes == ["only"]


def test_archive_safety_applies(tmp_path: Path, image_tree: Callable) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("cat/ok.png", b"x")
        zf.writestr("../evil.png", b"x")
    with pytest.raises(DatasetError, match=r"evil\.zip: member '\.\./evil\.png'"):
        load_image_folder(archive, scratch_dir=tmp_path / "scratch")
    assert not (tmp_path / "evil.png").exists()
    root = image_tree(tmp_path / "d", {"a": [GRAY_8] * 3})
    with pytest.raises(DatasetError, match="limit"):
        load_image_folder(
            _archive("zip", root, tmp_path / "big.zip"), limits=ArchiveLimits(max_total_bytes=100)
        )


def test_not_an_image(tmp_path: Path, image_tree: Callable) -> None:
    root = image_tree(tmp_path / "d", {"a": [GRAY_8], "b": [GRAY_8]})
    (root / "b" / "fake.png").write_bytes(b"this is text, not a PNG")
    with pytest.raises(DatasetError, match=r"d: b/fake\.png: not a readable PNG, JPEG or BMP image"):
        load_image_folder(root)


def test_other_formats_are_refused_even_if_pillow_knows_them(tmp_path: Path, image_tree: Callable) -> None:
    root = image_tree(tmp_path / "d", {"a": [GRAY_8]})
    Image.new("L", (4, 4)).save(root / "a" / "sneaky.png", format="GIF")
    with pytest.raises(DatasetError, match=r"a/sneaky\.png: not a readable"):
        load_image_folder(root)


def test_truncated_image(tmp_path: Path, image_tree: Callable) -> None:
    root = image_tree(tmp_path / "d", {"a": [(32, 32, "RGB", "png")]})
    path = root / "a" / "img_000.png"
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DatasetError, match=r"a/img_000\.png: "):
        load_image_folder(root)


def test_pixel_limit_guards_against_decompression_bombs(tmp_path: Path, image_tree: Callable) -> None:
    root = image_tree(tmp_path / "d", {"a": [(20, 20, "L", "png")]})
    with pytest.raises(DatasetError, match="20x20 image exceeds the 100-pixel limit"):
        load_image_folder(root, max_image_pixels=100)


def test_empty_folder_and_empty_class(tmp_path: Path, image_tree: Callable) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no class directories found"):
        load_image_folder(tmp_path / "empty")
    root = image_tree(tmp_path / "d", {"a": [GRAY_8]})
    (root / "b").mkdir()
    with pytest.raises(DatasetError, match="class directory 'b' holds no images"):
        load_image_folder(root)


def test_images_without_class_directories(tmp_path: Path) -> None:
    (tmp_path / "flat").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "flat" / "lonely.png")
    with pytest.raises(DatasetError, match="one subdirectory per class"):
        load_image_folder(tmp_path / "flat")


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "x.rar").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"expected a directory, \.zip"):
        load_image_folder(tmp_path / "x.rar")
    with pytest.raises(DatasetError, match="image_size must be positive"):
        load_image_folder(tmp_path, image_size=0)
    with pytest.raises(DatasetError, match="mode must be"):
        load_image_folder(tmp_path, mode="CMYK")
