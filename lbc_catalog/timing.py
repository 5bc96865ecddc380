"""How the speedup report times a layer on a CPU, as far as the service must size it.

``lbc_core.benchmark.report`` cycles each layer's timing through copies of its weight that together hold
as many elements as the model, at most ``TIMING_ROTATION_BYTES`` (far beyond any last-level cache), so a
layer is not timed from a cache the model never leaves it; ``jobs.sizing`` counts those copies in a
benchmark's memory estimate.
"""

from __future__ import annotations

TIMING_ROTATION_BYTES = 256 << 20
# A tiny layer of a large model would otherwise get tens of thousands of copies.
MAX_TIMING_WEIGHT_COPIES = 64
