"""A job's learned masks for people: which layers have one, and a downsampled grid of kept positions.

The masks artifact is safetensors holding one bit-packed uint8 tensor per layer (``numpy.packbits``
order, most significant bit first) with the shapes as JSON in the metadata. It is read here with
numpy alone: the header first, then only the bytes of the one layer asked for (the API never
imports torch).
"""

from __future__ import annotations

import json
import math
import struct
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from api.deps import JobDep, SessionDep, StoreDep
from api.errors import ERROR_RESPONSES, NOT_FOUND
from jobs import repository
from jobs.benchmarks import BENCHMARK_KIND
from jobs.errors import NotFound, ServiceError
from jobs.models import Job
from jobs.states import JobState
from jobs.storage import ObjectNotFound, ObjectStore

router = APIRouter(prefix="/v1/jobs", tags=["artifacts"], responses={**ERROR_RESPONSES, **NOT_FOUND})

MASKS_ARTIFACT = "masks.safetensors"
MASKS_FORMAT = "lbc.masks/1"
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_MASK_ELEMENTS = 1 << 26  # 8 MiB packed, 64 MiB unpacked; far beyond any built-in architecture's layer


class MaskFileInvalid(ServiceError):
    status_code, code = 422, "invalid_artifact"


class MaskLayer(BaseModel):
    name: str = Field(examples=["features.3"])
    shape: list[int] = Field(examples=[[16, 6, 5, 5]])


class MaskLayerList(BaseModel):
    items: list[MaskLayer]


class MaskGrid(BaseModel):
    """The mask as a 2-D picture: rows are output channels, columns the flattened reduction dimension
    (the one N:M groups run along), each cell the share of kept weights in its block."""

    layer: str
    shape: list[int] = Field(description="The weight's shape")
    rows: int = Field(description="Rows of the 2-D view: shape[0]")
    cols: int = Field(description="Columns of the 2-D view: the product of the other dimensions")
    grid_rows: int
    grid_cols: int
    row_scale: int = Field(description="Weight rows per cell (1: not downsampled)")
    col_scale: int = Field(description="Weight columns per cell (1: not downsampled)")
    kept: int = Field(description="Non-zero (kept) weights in the layer")
    total: int
    density: float
    cells: list[list[float]] = Field(description="grid_rows lists of grid_cols kept fractions in [0, 1]")


def _read(store: ObjectStore, key: str, start: int, end: int) -> bytes:
    data = b"".join(store.open_range(key, start, end))
    if len(data) != end - start + 1:
        raise MaskFileInvalid("the masks file is truncated")
    return data


def read_header(store: ObjectStore, key: str) -> tuple[dict[str, Any], int]:
    """(safetensors header, offset of the data section)."""
    (length,) = struct.unpack("<Q", _read(store, key, 0, 7))
    if not 2 <= length <= MAX_HEADER_BYTES:
        raise MaskFileInvalid("the masks file has no readable safetensors header")
    try:
        header = json.loads(_read(store, key, 8, 8 + length - 1))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MaskFileInvalid("the masks file has no readable safetensors header") from None
    if not isinstance(header, dict):
        raise MaskFileInvalid("the masks file has no readable safetensors header")
    return header, 8 + length


def mask_shapes(header: dict[str, Any]) -> dict[str, list[int]]:
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or metadata.get("format") != MASKS_FORMAT:
        raise MaskFileInvalid(f"the masks file is not in the {MASKS_FORMAT} format")
    try:
        shapes = json.loads(metadata.get("shapes", ""))
    except (TypeError, json.JSONDecodeError):
        raise MaskFileInvalid("the masks file has no readable shapes") from None
    if not isinstance(shapes, dict):
        raise MaskFileInvalid("the masks file has no readable shapes")
    out: dict[str, list[int]] = {}
    for name, shape in shapes.items():
        if not (isinstance(shape, list) and shape and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise MaskFileInvalid(f"mask {name!r} has an invalid shape")
        out[str(name)] = shape
    return out


def downsample(bits: np.ndarray, max_cells: int) -> tuple[np.ndarray, int, int]:
    """Kept fraction per block of a 2-D 0/1 array, at most ``max_cells`` blocks along each axis."""
    rows, cols = bits.shape
    row_scale = max(1, math.ceil(rows / max_cells))
    col_scale = max(1, math.ceil(cols / max_cells))
    # Rows first: the int32 partial sums are already max_cells rows high (no full-size int copy).
    counts = np.add.reduceat(bits, np.arange(0, rows, row_scale), axis=0, dtype=np.int32)
    if col_scale > 1:
        counts = np.add.reduceat(counts, np.arange(0, cols, col_scale), axis=1, dtype=np.int32)
    row_sizes = np.minimum(row_scale, rows - np.arange(0, rows, row_scale))
    col_sizes = np.minimum(col_scale, cols - np.arange(0, cols, col_scale))
    fractions = counts / (row_sizes[:, None] * col_sizes[None, :])
    return fractions, row_scale, col_scale


def mask_grid(store: ObjectStore, key: str, layer: str, max_cells: int) -> MaskGrid:
    header, data_start = read_header(store, key)
    shapes = mask_shapes(header)
    if layer not in shapes:
        raise NotFound(f"no mask for layer {layer!r}; masked layers: {', '.join(sorted(shapes)) or 'none'}")
    shape = shapes[layer]
    total = math.prod(shape)
    if total > MAX_MASK_ELEMENTS:
        raise MaskFileInvalid(f"mask {layer!r} has {total} weights, too many to render")
    entry = header.get(layer)
    offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
    packed_len = (total + 7) // 8
    if (
        not isinstance(entry, dict)
        or entry.get("dtype") != "U8"
        or not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) for o in offsets)
        or offsets[1] - offsets[0] != packed_len
    ):
        raise MaskFileInvalid(f"mask {layer!r} is not {packed_len} packed bytes for shape {shape}")
    packed = np.frombuffer(
        _read(store, key, data_start + offsets[0], data_start + offsets[1] - 1) if packed_len else b"",
        dtype=np.uint8,
    )
    rows = shape[0]
    cols = total // rows if rows else 0
    bits = np.unpackbits(packed, count=total).reshape(rows, cols)
    kept = int(bits.sum(dtype=np.int64))
    if rows and cols:
        fractions, row_scale, col_scale = downsample(bits, max_cells)
    else:
        fractions, row_scale, col_scale = np.zeros((0, 0)), 1, 1
    return MaskGrid(
        layer=layer,
        shape=shape,
        rows=rows,
        cols=cols,
        grid_rows=int(fractions.shape[0]),
        grid_cols=int(fractions.shape[1]) if fractions.ndim == 2 else 0,
        row_scale=row_scale,
        col_scale=col_scale,
        kept=kept,
        total=total,
        density=kept / total if total else 1.0,
        cells=np.round(fractions, 4).tolist(),
    )


def _masks_key(session: Session, job: Job) -> str:
    try:
        artifact = repository.get_artifact(session, job.id, MASKS_ARTIFACT)
    except NotFound:
        raise NotFound(f"job {job.id} has no masks: {no_masks_reason(job)}") from None
    return artifact.storage_key


def no_masks_reason(job: Job) -> str:
    """Why a job has no masks artifact, for its 404."""
    if job.state in (JobState.QUEUED.value, JobState.RUNNING.value, JobState.CANCELLING.value):
        return f"not yet: the job is {job.state}; masks are exported when it succeeds"
    if job.state == JobState.FAILED.value:
        return f"the job failed ({job.error_type or 'error'})"
    if job.state == JobState.CANCELLED.value:
        return "the job was cancelled"
    if job.kind == BENCHMARK_KIND:
        source = job.spec.get("source") if isinstance(job.spec, dict) else None
        measured = source.get("job_id") if isinstance(source, dict) else None
        return "a benchmark job measures a model and exports none" + (
            f"; job {measured} has them" if measured else ""
        )
    return "none were exported"


def _missing(job_id: str) -> NotFound:
    return NotFound(f"the stored masks of job {job_id} are missing")


@router.get("/{job_id}/masks", response_model=MaskLayerList, summary="List the masked layers")
def list_masks(job: JobDep, session: SessionDep, store: StoreDep) -> MaskLayerList:
    """The layers in the job's masks artifact, with their weight shapes (read from its header)."""
    key = _masks_key(session, job)
    try:
        header, _ = read_header(store, key)
    except ObjectNotFound:
        raise _missing(job.id) from None
    return MaskLayerList(items=[MaskLayer(name=n, shape=s) for n, s in mask_shapes(header).items()])


@router.get("/{job_id}/masks/{layer}", response_model=MaskGrid, summary="A layer's mask as a grid")
def get_mask(
    job: JobDep,
    session: SessionDep,
    store: StoreDep,
    layer: Annotated[str, Path(description="Layer name as in the manifest", max_length=256)],
    max_cells: Annotated[
        int, Query(ge=1, le=1024, description="Cells along each axis at most; larger layers are averaged")
    ] = 128,
) -> MaskGrid:
    """Kept positions of one layer: rows are outputs, columns the flattened reduction dimension.
    Layers larger than `max_cells` along an axis are downsampled; each cell is then the fraction of
    kept weights in its block, and `row_scale` / `col_scale` say how many weights a cell covers."""
    key = _masks_key(session, job)
    try:
        return mask_grid(store, key, layer, max_cells)
    except ObjectNotFound:
        raise _missing(job.id) from None
