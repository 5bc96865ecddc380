"""Export a finalized N:M model: sparse checkpoint, compact masks, compressed N:M form, manifest.

Every output is safetensors or JSON; nothing here unpickles (torch files load with weights_only=True).
"""

from lbc_core.export.bundle import (
    CHECKPOINT_FILE,
    COMPRESSED_FILE,
    MANIFEST_FILE,
    MASKS_FILE,
    ExportedFile,
    ExportResult,
    export_all,
    verified_report,
)
from lbc_core.export.compressed import (
    COMPRESSED_FORMAT,
    CompressedSizeReport,
    LayerSize,
    compress_state_dict,
    compressed_size_report,
    load_compressed,
    rebuild_model,
    save_compressed,
)
from lbc_core.export.errors import ExportError, MissingExportFileError
from lbc_core.export.manifest import MANIFEST_FORMAT, build_manifest, read_manifest, write_manifest
from lbc_core.export.masks import MASKS_FORMAT, load_masks, masks_from_model, save_masks
from lbc_core.export.semi_structured import (
    SHAPE_RULES,
    SemiStructuredResult,
    ShapeRule,
    SkippedConversion,
    semi_structured_ineligibility,
    semi_structured_support,
    to_semi_structured,
)
from lbc_core.export.sparse_checkpoint import (
    SPARSE_CHECKPOINT_FORMAT,
    load_state_dict_file,
    save_sparse_checkpoint,
)

__all__ = [
    "CHECKPOINT_FILE",
    "COMPRESSED_FILE",
    "COMPRESSED_FORMAT",
    "MANIFEST_FILE",
    "MANIFEST_FORMAT",
    "MASKS_FILE",
    "MASKS_FORMAT",
    "SHAPE_RULES",
    "SPARSE_CHECKPOINT_FORMAT",
    "CompressedSizeReport",
    "ExportError",
    "ExportResult",
    "ExportedFile",
    "LayerSize",
    "MissingExportFileError",
    "SemiStructuredResult",
    "ShapeRule",
    "SkippedConversion",
    "build_manifest",
    "compress_state_dict",
    "compressed_size_report",
    "export_all",
    "load_compressed",
    "load_masks",
    "load_state_dict_file",
    "masks_from_model",
    "read_manifest",
    "rebuild_model",
    "save_compressed",
    "save_masks",
    "save_sparse_checkpoint",
    "semi_structured_ineligibility",
    "semi_structured_support",
    "to_semi_structured",
    "verified_report",
    "write_manifest",
]
