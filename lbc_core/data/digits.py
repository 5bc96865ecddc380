"""scikit-learn's bundled 8x8 handwritten digits (ships with the package, no download)."""

from __future__ import annotations

import numpy as np
import torch

from .arrays import ArrayDataset

# Pixel values in the bundled set are counts of 0..16 set bits in 4x4 blocks.
_DIGITS_MAX_VALUE = 16.0


def load_digits() -> ArrayDataset:
    """The 1,797 digits as N x 1 x 8 x 8 float32 images in [0, 1], classes "0".."9"."""
    # Imported lazily: scikit-learn is heavy and only this loader needs it.
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / _DIGITS_MAX_VALUE
    x = torch.from_numpy(images).unsqueeze(1)
    y = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    return ArrayDataset(x, y, [str(d) for d in range(10)], name="digits")
