"""ImageFolder layout (root/<class_name>/<image>) from a directory, .zip or tar archive.

Rules, in order:

* archives are extracted with :func:`extract_archive` (all safety checks there) into a
  fresh directory under ``scratch_dir`` (or a temp dir) that is removed after decoding;
* wrapper directories are skipped: while the root holds exactly one directory, no
  image files and that directory holds only subdirectories, descend into it (so
  ``data.zip:data/cat/1.png`` works like ``cat/1.png``);
* every visible subdirectory of the root is a class (sorted by name); images are
  found recursively inside it; hidden entries and ``__MACOSX`` are skipped, files
  without an image extension are ignored, a class without images is an error;
* every image must decode as PNG, JPEG or BMP; it is converted to ``L`` when all
  images are grayscale, to ``RGB`` otherwise (or to the given ``mode``), and resized
  (bilinear) to ``image_size`` (an int for square images or (height, width)), or to
  the size of the first image when not given.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .archives import ArchiveLimits, archive_kind, extract_archive, scratch_directory
from .arrays import ArrayDataset
from .errors import DatasetError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
# Only the decoders we need: an upload must not reach Pillow's rarer, less-audited plugins.
_PIL_FORMATS = ("PNG", "JPEG", "BMP")
_GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "F"})
# 16.7 megapixels: far beyond any image worth training on at in-memory scale, far
# below what a crafted header can claim (Pillow's own bomb limit is ~179M).
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
_SKIPPED_NAMES = frozenset({"__MACOSX"})


def load_image_folder(
    path: str | os.PathLike[str],
    *,
    image_size: int | tuple[int, int] | None = None,
    mode: str | None = None,
    scratch_dir: str | os.PathLike[str] | None = None,
    limits: ArchiveLimits | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> ArrayDataset:
    """Load an ImageFolder tree as N x C x H x W float32 in [0, 1]; see the module doc."""
    source = Path(path)
    size = None
    if image_size is not None:
        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
        if height < 1 or width < 1:
            raise DatasetError(f"image_size must be positive, got {image_size}")
        size = (width, height)  # Pillow order
    if mode not in (None, "L", "RGB"):
        raise DatasetError(f"image mode must be 'L' or 'RGB', got {mode!r}")
    if source.is_dir():
        return _load_tree(source, source.name, size, mode, max_image_pixels)
    if not source.is_file():
        raise DatasetError(f"{source}: image folder path does not exist")
    if archive_kind(source) is None:
        raise DatasetError(f"{source.name}: expected a directory, .zip, .tar, .tar.gz or .tgz")
    with scratch_directory(None if scratch_dir is None else Path(scratch_dir), "imagefolder-") as tmp:
        extract_archive(source, tmp, limits)
        return _load_tree(tmp, source.name, size, mode, max_image_pixels)


def _visible(entry: Path) -> bool:
    return not entry.name.startswith(".") and entry.name not in _SKIPPED_NAMES


def _is_image(entry: Path) -> bool:
    return entry.suffix.lower() in IMAGE_EXTENSIONS


def _find_root(root: Path) -> Path:
    while True:
        entries = [e for e in root.iterdir() if _visible(e)]
        dirs = [e for e in entries if e.is_dir()]
        has_images = any(e.is_file() and _is_image(e) for e in entries)
        if len(dirs) != 1 or has_images:
            return root
        inner = [e for e in dirs[0].iterdir() if _visible(e)]
        if not inner or not all(e.is_dir() for e in inner):
            return root
        root = dirs[0]


def _class_files(class_dir: Path) -> list[Path]:
    files = []
    # os.walk with sorted names keeps the sample order independent of the file system.
    for current, dirnames, filenames in os.walk(class_dir):
        dirnames[:] = sorted(d for d in dirnames if _visible(Path(d)))
        for filename in sorted(filenames):
            candidate = Path(current) / filename
            if _visible(candidate) and _is_image(candidate):
                files.append(candidate)
    return files


def _load_tree(
    top: Path, label: str, size: tuple[int, int] | None, mode: str | None, max_pixels: int
) -> ArrayDataset:
    root = _find_root(top)
    class_dirs = sorted((e for e in root.iterdir() if e.is_dir() and _visible(e)), key=lambda e: e.name)
    if not class_dirs:
        hint = (
            " (images must sit in one subdirectory per class)"
            if any(_is_image(e) for e in root.iterdir())
            else ""
        )
        raise DatasetError(f"{label}: no class directories found{hint}")
    samples: list[tuple[Path, int]] = []
    for index, class_dir in enumerate(class_dirs):
        files = _class_files(class_dir)
        if not files:
            raise DatasetError(
                f"{label}: class directory {class_dir.name!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})"
            )
        samples.extend((f, index) for f in files)

    def name_of(file: Path) -> str:
        return f"{label}: {file.relative_to(root).as_posix()}"

    # First pass reads headers only (cheap) to pick one colour mode and the output size.
    sizes_modes = [_probe(file, name_of(file), max_pixels) for file, _ in samples]
    if mode is None:
        mode = "L" if all(m in _GRAYSCALE_MODES for _, m in sizes_modes) else "RGB"
    width, height = size or sizes_modes[0][0]
    channels = 1 if mode == "L" else 3
    pixels = np.empty((len(samples), height, width, channels), dtype=np.uint8)
    for i, (file, _) in enumerate(samples):
        pixels[i] = _decode(file, name_of(file), mode, (width, height), max_pixels).reshape(
            height, width, channels
        )
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).to(torch.float32).div_(255.0).contiguous()
    y = torch.tensor([index for _, index in samples], dtype=torch.int64)
    return ArrayDataset(x, y, [d.name for d in class_dirs], name=label)


_DECODE_ERRORS = (
    UnidentifiedImageError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,  # arrives as an exception when warnings are errors
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
)


def _open(file: Path, name: str, max_pixels: int) -> Image.Image:
    try:
        image = Image.open(file, formats=_PIL_FORMATS)
    except _DECODE_ERRORS as exc:
        raise DatasetError(f"{name}: not a readable PNG, JPEG or BMP image ({exc})") from exc
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise DatasetError(
            f"{name}: {width}x{height} image exceeds the {max_pixels}-pixel limit (possible decompression bomb)"
        )
    return image


def _probe(file: Path, name: str, max_pixels: int) -> tuple[tuple[int, int], str]:
    with _open(file, name, max_pixels) as image:
        return image.size, image.mode


def _decode(file: Path, name: str, mode: str, size: tuple[int, int], max_pixels: int) -> np.ndarray:
    with _open(file, name, max_pixels) as image:
        try:
            image.load()
            if image.mode in ("P", "PA"):
                # Via RGBA so palette transparency is handled without Pillow warnings.
                converted = image.convert("RGBA").convert(mode)
            else:
                converted = image.convert(mode)
            if converted.size != size:
                converted = converted.resize(size, Image.Resampling.BILINEAR)
            return np.asarray(converted, dtype=np.uint8)
        except _DECODE_ERRORS as exc:
            raise DatasetError(f"{name}: cannot decode image ({exc})") from exc
