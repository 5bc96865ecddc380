"""A pickle loader that can only build plain containers and numpy arrays.

CIFAR's "python version" batches are pickles, and a pickle can call any importable
function while loading (``os.system`` included). :func:`restricted_loads` resolves
only the handful of globals that numpy arrays need; every other global is refused
with a DatasetError before anything runs. Dicts, lists, tuples, bytes, str, ints and
floats need no globals at all.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import DatasetError


def _numpy_globals() -> dict[tuple[str, str], Any]:
    # Take the functions from numpy's own reduce output instead of importing
    # numpy.core / numpy._core by name: the module moved in numpy 2, and old pickles
    # (CIFAR was written by Python 2 / numpy 1) still use the old name.
    array = np.zeros(1, dtype=np.uint8)
    reconstruct: Any = array.__reduce__()[0]
    frombuffer: Any = array.__reduce_ex__(5)[0]
    scalar: Any = np.uint8(0).__reduce__()[0]

    def checked_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if subtype is not np.ndarray:
            raise DatasetError("pickle tries to reconstruct a non-ndarray type")
        return reconstruct(subtype, shape, dtype)

    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = checked_reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, "latin1").
    if encoding not in ("latin1", "latin-1"):
        raise DatasetError(f"pickle asks for codec {encoding!r}; only latin1 is allowed")
    return text.encode("latin1")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose ``find_class`` knows only numpy array construction."""

    def __init__(self, file: io.BufferedIOBase, name: str) -> None:
        # encoding="bytes": Python 2 str objects (CIFAR's keys and raw array data) stay bytes.
        super().__init__(file, encoding="bytes")
        self._name = name
        self._allowed: dict[tuple[str, str], Callable[..., Any] | type] = {
            **_numpy_globals(),
            ("_codecs", "encode"): _latin1_encode,
        }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DatasetError(
                f"{self._name}: pickle refers to {module}.{name}, which is not allowed "
                "(only plain containers and numpy arrays may be loaded)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise DatasetError(f"{self._name}: pickle uses persistent ids, which are not allowed")


def restricted_loads(data: bytes, name: str) -> Any:
    """Unpickle ``data`` (from the file ``name``) allowing only containers and arrays."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), name).load()
    except DatasetError:
        raise
    except Exception as exc:
        # Only allowed constructors can run, so anything else raised here means the
        # bytes are malformed; report it as such whatever the exception type.
        raise DatasetError(f"{name}: malformed pickle ({type(exc).__name__}: {exc})") from exc
