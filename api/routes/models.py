"""The built-in architectures: arguments with defaults, input size, and which layers get an N:M mask."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import CurrentOwner
from api.errors import ERROR_RESPONSES, NOT_FOUND
from api.schemas import LayerInfo, ModelArgument, ModelList, ModelOut
from jobs.catalog import ARCHITECTURES, argument_help, catalog_layers
from jobs.errors import NotFound

router = APIRouter(prefix="/v1/models", tags=["models"], responses=ERROR_RESPONSES)


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
