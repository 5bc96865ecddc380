"""lbc_core: learn N:M structured sparsity for PyTorch models with LBC, plus baselines.

A pure PyTorch library: models, data loaders, the sparsity methods, a training loop with
checkpoint/resume, and verified exports. It imports nothing of the service around it.
"""

from lbc_core.data import DataBundle, DataConfig, DatasetError, load_data
from lbc_core.export import (
    ExportError,
    ExportResult,
    export_all,
    load_compressed,
    rebuild_model,
    to_semi_structured,
)
from lbc_core.models import build_model, get_architecture, list_architectures
from lbc_core.pipeline import ExportConfig, ModelConfig, RunConfig, RunError, RunResult, run
from lbc_core.sparsity import (
    METHODS,
    LayerPolicy,
    NMPattern,
    PatternError,
    RemovalSchedule,
    ScoreOptimizer,
    Sparsifier,
    SparsityConfig,
    SparsityReport,
    build_sparsifier,
    is_nm_sparse,
)
from lbc_core.training import TrainConfig, Trainer, TrainingCallback, evaluate

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "DataBundle",
    "DataConfig",
    "DatasetError",
    "ExportConfig",
    "ExportError",
    "ExportResult",
    "LayerPolicy",
    "ModelConfig",
    "NMPattern",
    "PatternError",
    "RemovalSchedule",
    "RunConfig",
    "RunError",
    "RunResult",
    "ScoreOptimizer",
    "Sparsifier",
    "SparsityConfig",
    "SparsityReport",
    "TrainConfig",
    "Trainer",
    "TrainingCallback",
    "build_model",
    "build_sparsifier",
    "evaluate",
    "export_all",
    "get_architecture",
    "is_nm_sparse",
    "list_architectures",
    "load_compressed",
    "load_data",
    "rebuild_model",
    "run",
    "to_semi_structured",
]
