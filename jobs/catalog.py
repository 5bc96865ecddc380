"""The architecture catalog as the service sees it: read from ``lbc_catalog.architectures`` (one source)."""

from lbc_catalog.architectures import (
    ARCHITECTURES,
    FLOAT_ARG_RANGES,
    INT_ARG_RANGES,
    MAX_HIDDEN_LAYERS,
    STRUCTURAL_ARGS,
    ArchitectureEntry,
    architecture_names,
    argument_help,
    catalog_layers,
    check_model_args,
    list_architectures,
    render_catalog,
    weight_layer_names,
)

__all__ = [
    "ARCHITECTURES",
    "FLOAT_ARG_RANGES",
    "INT_ARG_RANGES",
    "MAX_HIDDEN_LAYERS",
    "STRUCTURAL_ARGS",
    "ArchitectureEntry",
    "architecture_names",
    "argument_help",
    "catalog_layers",
    "check_model_args",
    "list_architectures",
    "render_catalog",
    "weight_layer_names",
]
