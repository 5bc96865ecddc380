"""The built-in architectures: arguments with defaults, input size, and which layers get an N:M mask."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Path

from api.deps import CurrentOwner
from api.errors import ERROR_RESPONSES, NOT_FOUND
from api.schemas import LayerInfo, ModelArgument, ModelList, ModelOut
from jobs.catalog import ARCHITECTURES, argument_help
from jobs.errors import NotFound

router = APIRouter(prefix="/v1/models", tags=["models"], responses=ERROR_RESPONSES)


@lru_cache(maxsize=1)
def catalog_layers() -> dict[str, Any]:
    """``jobs/catalog_layers.json``: generated from the engine, checked by tests/api/test_models_endpoint.py."""
    text = resources.files("jobs").joinpath("catalog_layers.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _model(name: str) -> ModelOut:
    entry = ARCHITECTURES[name]
    table = catalog_layers()
    return ModelOut(
        name=entry.name,
        description=entry.description,
        input_size=None if entry.input_size == (0, 0) else list(entry.input_size),
        args=[ModelArgument(name=k, default=v, help=argument_help(k)) for k, v in entry.defaults.items()],
        layers=[LayerInfo(**layer) for layer in table["architectures"].get(name, [])],
    )


@router.get("", response_model=ModelList, summary="List architectures")
def list_models(owner: CurrentOwner) -> ModelList:
    return ModelList(items=[_model(name) for name in ARCHITECTURES], m_values=catalog_layers()["m_values"])


@router.get("/{name}", response_model=ModelOut, summary="Get an architecture", responses=NOT_FOUND)
def get_model(
    name: Annotated[str, Path(description="Architecture name", max_length=64, examples=["lenet5"])],
    owner: CurrentOwner,
) -> ModelOut:
    if name not in ARCHITECTURES:
        raise NotFound(f"unknown architecture {name!r}; valid choices: {', '.join(ARCHITECTURES)}")
    return _model(name)
