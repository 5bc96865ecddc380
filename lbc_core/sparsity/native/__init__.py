"""LBC's fused per-weight step as a native (C++) PyTorch operator, with its build and its loader.

The operator is optional: :func:`load` reports whether it is available, and LBC falls back to its plain
PyTorch path when it is not (no compiler at install, an unsupported platform, a stale build).
"""

from lbc_core.sparsity.native.library import NativeBuildError, library_path, load, load_error

__all__ = ["NativeBuildError", "library_path", "load", "load_error"]
