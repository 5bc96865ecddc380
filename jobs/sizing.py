"""How big a catalog model is and how much memory a job on it needs, computed without building it.

Standard library only (no torch, no pydantic), so the API can refuse a job that cannot fit at submit time
and the worker can quote the same estimate when an allocation fails. The per-architecture arithmetic
mirrors ``lbc_core.models`` layer by layer; ``tests/lbc_core/test_model_size.py`` compares the parameter
and output counts with the built models for every architecture, so a change to a model without a change
here fails the tests.

The memory estimate (float32 throughout) adds up:

- weights, their gradients and the optimizer state (SGD momentum: 1x, AdamW: 2x the weight bytes);
- the sparsity state of the Linear/Conv2d weights: LBC's per-weight score and momentum (about 2.3x the
  weight bytes, README "Score state") plus the cached mask (1x) and, once it prunes, the byte copy the
  fused CPU step reads (0.25x); SR-STE and ASP keep the mask only;
- activations kept for backward: ``ACTIVATION_FACTOR`` tensors the size of every Linear/Conv2d output
  (the layer output, its normalisation and its activation), plus the ViT's attention scores, times the
  rows of one backward pass: the batch, or with ``train.grad_accumulation_steps`` = k one micro-batch
  (``ceil(batch / k)`` rows: the loop splits the batch into k parts and frees each one's activations in
  its backward); validation and benchmarks keep only a few tensors alive at a time;
- a dense starting checkpoint, which is read whole before it is copied into the model.

A job on ``train.processes`` = P > 1 processes is sized per process, then for the memory they share. Every
process (rank) holds all of the above for its own share of the batch (``ceil(batch / P)`` samples, split
into k micro-batches of ``ceil(batch / (P * k))``), plus
DDP's gradient buckets (about 1x the gradients). CPU processes share the host's memory, so the job needs P
times one rank; CUDA processes (``train.device`` ``cuda`` or ``cuda:N``) get one GPU each, so the job needs
one rank's bytes on each GPU and that is what the limit is compared with. ``auto`` is sized like CPU: the
worker that takes it may have no GPU.

It is an estimate, meant to catch the model that cannot fit (orders of magnitude), not to budget bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jobs.catalog import ARCHITECTURES
from lbc_catalog.timing import TIMING_ROTATION_BYTES

FLOAT_BYTES = 4
# Tensors kept for backward per Linear/Conv2d output: its output, the normalisation's and the activation's.
ACTIVATION_FACTOR = 3
# Tensors alive at once in a forward pass without autograd (input, output and a residual branch).
INFERENCE_FACTOR = 3
# LBC's per-weight score and momentum (<= 2.3x the weight bytes, README "Score state"), the mask (1x) and
# its byte copy for the fused CPU step once it prunes (0.25x, lbc_core/sparsity/masking.py).
SPARSITY_STATE_FACTOR = {"lbc": 3.55, "srste": 1.0, "asp": 1.0, "wanda": 1.0, "dense": 0.0}
OPTIMIZER_STATE_FACTOR = {"sgd": 1.0, "adamw": 2.0}


@dataclass(frozen=True)
class ModelShape:
    """Sizes of one catalog model for one input shape (per sample)."""

    parameters: int  # every parameter: what ``sum(p.numel() for p in model.parameters())`` counts
    weight_parameters: int  # the weights (not biases) of its Linear/Conv2d layers
    layer_outputs: int  # elements of every Linear/Conv2d output for one sample
    largest_output: int  # elements of the largest single Linear/Conv2d output for one sample
    attention_scores: int = 0  # ViT: heads x tokens x tokens per block, for one sample


class _Counter:
    """Accumulates parameters and outputs while walking an architecture's layers in forward order."""

    def __init__(self) -> None:
        self.parameters = 0
        self.weights = 0
        self.outputs = 0
        self.largest = 0
        self.attention = 0

    def _output(self, elements: int) -> None:
        self.outputs += elements
        self.largest = max(self.largest, elements)

    def conv(
        self,
        cin: int,
        cout: int,
        kernel: int,
        size: tuple[int, int],
        *,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bias: bool = False,
    ) -> tuple[int, int]:
        weight = cout * (cin // groups) * kernel * kernel
        self.weights += weight
        self.parameters += weight + (cout if bias else 0)
        height, width = (max(0, (side + 2 * padding - kernel) // stride + 1) for side in size)
        self._output(cout * height * width)
        return height, width

    def linear(self, fin: int, fout: int, *, tokens: int = 1, bias: bool = True) -> None:
        self.weights += fin * fout
        self.parameters += fin * fout + (fout if bias else 0)
        self._output(fout * tokens)

    def norm(self, channels: int) -> None:
        self.parameters += 2 * channels  # BatchNorm2d / LayerNorm weight and bias

    def shape(self) -> ModelShape:
        return ModelShape(self.parameters, self.weights, self.outputs, self.largest, self.attention)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Copy of ``lbc_core.models._util.make_divisible``: the zoo rounds channel counts with it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _pool(size: tuple[int, int], kernel: int, stride: int, padding: int = 0) -> tuple[int, int]:
    height, width = ((side + 2 * padding - kernel) // stride + 1 for side in size)
    return max(height, 0), max(width, 0)


def _mlp(a: Mapping[str, Any], shape: Sequence[int]) -> ModelShape:
    c = _Counter()
    sizes = a["hidden_sizes"] if a["hidden_sizes"] is not None else [a["hidden_dim"]] * a["depth"]
    previous = a["input_features"]
    for size in sizes:
        hidden = make_divisible(size * a["width"])
        c.linear(previous, hidden)
        previous = hidden
    c.linear(previous, a["num_classes"])
    return c.shape()


def _lenet5(a: Mapping[str, Any], shape: Sequence[int]) -> ModelShape:
    c = _Counter()
    width = a["width"]
    c1, c2 = make_divisible(8 * width), make_divisible(16 * width)
    f1, f2 = make_divisible(120 * width, 4), make_divisible(84 * width, 4)
    size = c.conv(a["in_channels"], c1, 5, _image(shape), padding=2, bias=True)
    size = c.conv(c1, c2, 5, _pool(size, 2, 2), padding=2, bias=True)
    c.linear(c2 * 4 * 4, f1)  # after the adaptive 4x4 pool
    c.linear(f1, f2)
    c.linear(f2, a["num_classes"])
    return c.shape()


def _basic_block(c: _Counter, cin: int, planes: int, stride: int, size: tuple[int, int]) -> tuple[int, int]:
    out = c.conv(cin, planes, 3, size, stride=stride, padding=1)
    c.norm(planes)
    c.conv(planes, planes, 3, out, padding=1)
    c.norm(planes)
    if stride != 1 or cin != planes:
        c.conv(cin, planes, 1, size, stride=stride)
        c.norm(planes)
    return out


def _bottleneck(c: _Counter, cin: int, planes: int, stride: int, size: tuple[int, int]) -> tuple[int, int]:
    c.conv(cin, planes, 1, size)
    c.norm(planes)
    out = c.conv(planes, planes, 3, size, stride=stride, padding=1)
    c.norm(planes)
    c.conv(planes, 4 * planes, 1, out)
    c.norm(4 * planes)
    if stride != 1 or cin != 4 * planes:
        c.conv(cin, 4 * planes, 1, size, stride=stride)
        c.norm(4 * planes)
    return out


def _cifar_resnet(depth: int) -> Any:
    def shape_of(a: Mapping[str, Any], shape: Sequence[int]) -> ModelShape:
        c = _Counter()
        blocks = (depth - 2) // 6
        base = make_divisible(16 * a["width"])
        size = c.conv(a["in_channels"], base, 3, _image(shape), padding=1)
        c.norm(base)
        cin = base
        for planes, stride in ((base, 1), (2 * base, 2), (4 * base, 2)):
            for index in range(blocks):
                size = _basic_block(c, cin, planes, stride if index == 0 else 1, size)
                cin = planes
        c.linear(4 * base, a["num_classes"])
        return c.shape()

    return shape_of


def _resnet(layers: tuple[int, int, int, int], bottleneck: bool) -> Any:
    def shape_of(a: Mapping[str, Any], shape: Sequence[int]) -> ModelShape:
        c = _Counter()
        expansion = 4 if bottleneck else 1
        block = _bottleneck if bottleneck else _basic_block
        base = make_divisible(64 * a["width"])
        size = c.conv(a["in_channels"], base, 7, _image(shape), stride=2, padding=3)
        c.norm(base)
        size = _pool(size, 3, 2, 1)
        cin = base
        for stage, blocks in enumerate(layers):
            planes = base * 2**stage
            for index in range(blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                size = block(c, cin, planes, stride, size)
                cin = planes * expansion
        c.linear(8 * base * expansion, a["num_classes"])
        return c.shape()

    return shape_of


# (expansion t, output channels c, repeats n, first stride s): lbc_core.models.mobilenetv2._SETTINGS.
_MOBILENET_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _mobilenetv2(a: Mapping[str, Any], shape: Sequence[int]) -> ModelShape:
    c = _Counter()
    width = a["width"]
    cin = make_divisible(32 * width)
    last = make_divisible(1280 * max(1.0, width))
    size = c.conv(a["in_channels"], cin, 3, _image(shape), stride=2, padding=1)
    c.norm(cin)
    for t, channels, repeats, first_stride in _MOBILENET_SETTINGS:
        out = make_divisible(channels * width)
        for index in range(repeats):
            hidden = cin * t
            if t != 1:
                c.conv(cin, hidden, 1, size)
                c.norm(hidden)
            size = c.conv(
                hidden, hidden, 3, size, stride=first_stride if index == 0 else 1, padding=1, groups=hidden
            )
            c.norm(hidden)
            c.conv(hidden, out, 1, size)
            c.norm(out)
            cin = out
    c.conv(cin, last, 1, size)
    c.norm(last)
    c.linear(last, a["num_classes"])
    return c.shape()


def _vit(a: Mapping[str, Any], shape: Sequence[int]) -> ModelShape:
    c = _Counter()
    dim, heads, patch, side = a["embed_dim"], a["num_heads"], a["patch_size"], a["image_size"]
    c.conv(a["in_channels"], dim, patch, (side, side), stride=patch, bias=True)
    tokens = (side // patch) ** 2 + 1
    c.parameters += dim + tokens * dim  # cls token and position embedding
    hidden = make_divisible(dim * a["mlp_ratio"])
    for _ in range(a["depth"]):
        c.norm(dim)
        c.linear(dim, 3 * dim, tokens=tokens)
        c.linear(dim, dim, tokens=tokens)
        c.norm(dim)
        c.linear(dim, hidden, tokens=tokens)
        c.linear(hidden, dim, tokens=tokens)
        c.attention += heads * tokens * tokens
    c.norm(dim)
    c.linear(dim, a["num_classes"])
    return c.shape()


def _image(shape: Sequence[int]) -> tuple[int, int]:
    return (shape[-2], shape[-1]) if len(shape) == 3 else (1, 1)


_SHAPES = {
    "mlp": _mlp,
    "lenet5": _lenet5,
    "resnet20": _cifar_resnet(20),
    "resnet32": _cifar_resnet(32),
    "resnet56": _cifar_resnet(56),
    "resnet18": _resnet((2, 2, 2, 2), bottleneck=False),
    "resnet34": _resnet((3, 4, 6, 3), bottleneck=False),
    "resnet50": _resnet((3, 4, 6, 3), bottleneck=True),
    "mobilenetv2": _mobilenetv2,
    "vit": _vit,
}


def model_arguments(
    architecture: str,
    args: Mapping[str, Any],
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """Every argument the engine builds ``architecture`` with: the catalog's defaults, then what the data
    says (as ``lbc_core.pipeline.model_arguments`` fills them in), then ``args``."""
    defaults = ARCHITECTURES[architecture].defaults
    merged = dict(defaults)
    if num_classes is not None:
        merged["num_classes"] = num_classes
    if input_shape:
        if "in_channels" in defaults and len(input_shape) == 3:
            merged["in_channels"] = input_shape[0]
        if "input_features" in defaults:
            merged["input_features"] = math.prod(input_shape)
        if "image_size" in defaults and len(input_shape) == 3:
            merged["image_size"] = input_shape[-1]
    merged.update(args)
    return merged


def default_input_shape(architecture: str, args: Mapping[str, Any]) -> tuple[int, ...]:
    """The per-sample input ``architecture`` is built for (``lbc_core.benchmark.architecture_input_shape``)."""
    entry = ARCHITECTURES[architecture]
    merged = {**entry.defaults, **args}
    if entry.input_size == (0, 0):
        return (int(merged["input_features"]),)
    height, width = entry.input_size
    if "image_size" in merged:
        height = width = int(merged["image_size"])
    return (int(merged["in_channels"]), height, width)


def model_shape(
    architecture: str,
    args: Mapping[str, Any],
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
) -> ModelShape:
    """Parameter and output counts of ``architecture`` built with ``args`` for samples of ``input_shape``
    (omitted: the size it is designed for). ``args`` must have passed ``catalog.check_model_args``."""
    full = model_arguments(architecture, args, input_shape, num_classes)
    shape = tuple(input_shape) if input_shape else default_input_shape(architecture, full)
    return _SHAPES[architecture](full, shape)


def input_problems(
    architecture: str, args: Mapping[str, Any], input_shape: Sequence[int], what: str
) -> list[tuple[str, str]]:
    """Where ``args`` contradict samples of ``input_shape`` (``[C, H, W]`` or ``[F]``) from ``what``, as
    ``(argument or "architecture", message)`` pairs; empty when the model can take them.

    Only arguments that are given can contradict: omitted ones are filled in from the data.
    """
    entry = ARCHITECTURES[architecture]
    shape = list(input_shape)
    if entry.input_size == (0, 0):  # the MLP flattens whatever it gets
        features = args.get("input_features")
        if features is not None and features != math.prod(shape):
            return [
                (
                    "input_features",
                    f"{what} has samples of shape {shape}, {math.prod(shape)} values each; got {features}",
                )
            ]
        return []
    if len(shape) != 3:
        return [
            ("architecture", f"{architecture} needs image samples [C, H, W]; {what} has flat samples {shape}")
        ]
    problems: list[tuple[str, str]] = []
    channels = args.get("in_channels")
    if channels is not None and channels != shape[0]:
        problems.append(
            ("in_channels", f"{what} has {shape[0]}-channel samples of shape {shape}; got {channels}")
        )
    if "image_size" in entry.defaults:  # the ViT's position embedding fixes the input size
        side = args.get("image_size", shape[-1])
        patch = args.get("patch_size", entry.defaults["patch_size"])
        if shape[-2] != shape[-1]:
            problems.append(("architecture", f"{architecture} needs square samples; {what} has {shape}"))
        elif side != shape[-1]:
            problems.append(("image_size", f"{what} has {shape[-2]}x{shape[-1]} samples; got {side}"))
        elif side % patch:
            problems.append(("patch_size", f"patch_size {patch} must divide {what}'s image size {side}"))
    return problems


# Tokens per sample assumed for a text model until its data says otherwise: its position table, capped
# (training blocks are rarely longer, and the estimate should not refuse a model for its maximum context).
HF_TEXT_TOKENS = 512


def hf_model_shape(summary: Mapping[str, Any]) -> ModelShape:
    """Sizes of an uploaded Hugging Face model from what its upload check recorded: the real parameter
    count of its weights, and per-sample outputs of a transformer with its config's sizes."""
    recorded = summary.get("sizes")
    sizes: Mapping[str, Any] = recorded if isinstance(recorded, Mapping) else {}
    hidden = int(sizes.get("hidden", 0))
    layers = int(sizes.get("layers", 0))
    heads = int(sizes.get("heads", 0))
    intermediate = int(sizes.get("intermediate", 4 * hidden))
    tokens = int(sizes.get("tokens", min(int(sizes.get("positions", HF_TEXT_TOKENS)), HF_TEXT_TOKENS)))
    vocab = int(sizes.get("vocab", 0))
    # Per layer and token: q, k, v and the attention output (4 x hidden), the MLP's gate and up projections
    # (2 x intermediate) and its down projection (hidden); then the head over the vocabulary once.
    outputs = layers * tokens * (5 * hidden + 2 * intermediate) + tokens * vocab
    parameters = int(summary.get("parameter_count", 0))
    return ModelShape(
        parameters=parameters,
        weight_parameters=int(summary.get("matrix_parameters", parameters)),
        layer_outputs=outputs,
        largest_output=tokens * max(intermediate, vocab, hidden),
        attention_scores=layers * heads * tokens * tokens,
    )


# -- memory -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one job needs, by what holds them: for a multi-process job, what each of its processes holds."""

    parameters: int
    weights: int
    gradients: int
    optimizer: int
    sparsity: int
    activations: int
    checkpoint: int
    buckets: int = 0  # DDP's gradient buckets (multi-process jobs)
    processes: int = 1
    # CUDA ranks have a GPU each; CPU ranks (and a single process) share one memory.
    per_device: bool = False

    @property
    def per_process(self) -> int:
        return (
            self.weights
            + self.gradients
            + self.optimizer
            + self.sparsity
            + self.activations
            + self.checkpoint
            + self.buckets
        )

    @property
    def total(self) -> int:
        """What the limit is compared with: the bytes on the memory the job's processes share (the host's
        for CPU processes, P ranks' worth), or on each of their GPUs (one rank's worth)."""
        return self.per_process if self.per_device else self.processes * self.per_process

    def describe(self) -> str:
        """What the 422 and the worker say: ``"about 12.3 GiB (1.2 G parameters: weights 4.5 GiB, ...)"``;
        for P CPU processes ``"about 8.0 GiB (4 processes x about 2.0 GiB: 1.2 G parameters: ...)"``; for P
        CUDA processes ``"about 2.0 GiB per GPU (4 processes, one GPU each: 1.2 G parameters: ...)"``."""
        parts = [(label, getattr(self, name)) for name, label in _PARTS if getattr(self, name)]
        detail = ", ".join(f"{label} {format_bytes(value)}" for label, value in parts)
        what = f"{format_count(self.parameters)} parameters: {detail}"
        if self.processes == 1:
            return f"about {format_bytes(self.total)} ({what})"
        if self.per_device:
            return (
                f"about {format_bytes(self.total)} per GPU ({self.processes} processes, one GPU each: {what})"
            )
        return (
            f"about {format_bytes(self.total)} "
            f"({self.processes} processes x about {format_bytes(self.per_process)}: {what})"
        )


# The parts of an estimate as describe() names them, in its order.
_PARTS = (
    ("weights", "weights"),
    ("gradients", "gradients"),
    ("optimizer", "optimizer"),
    ("sparsity", "sparsity"),
    ("activations", "activations"),
    ("checkpoint", "checkpoint"),
    ("buckets", "gradient buckets"),
)


def training_memory(
    shape: ModelShape,
    *,
    batch_size: int,
    eval_batch_size: int,
    optimizer: str,
    momentum: float,
    method: str,
    checkpoint_parameters: int = 0,
    processes: int = 1,
    per_device: bool = False,
    accumulation_steps: int = 1,
) -> MemoryEstimate:
    """Peak memory of training ``shape`` as a job spec describes it, on ``processes`` ranks that each have a
    device of their own (``per_device``: CUDA) or share one memory (CPU), each running its share of a batch
    as ``accumulation_steps`` micro-batches."""
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    if accumulation_steps < 1:
        raise ValueError(f"accumulation_steps must be at least 1, got {accumulation_steps}")
    weights = FLOAT_BYTES * shape.parameters
    state = OPTIMIZER_STATE_FACTOR[optimizer] if optimizer != "sgd" or momentum > 0 else 0.0
    per_sample = ACTIVATION_FACTOR * shape.layer_outputs + shape.attention_scores
    # Each rank runs its own share of every global batch (the first ranks take one more when it is uneven),
    # as accumulation_steps consecutive micro-batches (the first ones one row longer when uneven); a
    # micro-batch's activations are freed by its backward before the next one's forward.
    # ceil(ceil(b / P) / k) == ceil(b / (P * k)) for positive integers.
    rows = math.ceil(batch_size / (processes * accumulation_steps))
    training = rows * per_sample
    # Only rank 0 validates, but every rank is sized like it: an estimate, not a budget.
    validation = eval_batch_size * (INFERENCE_FACTOR * shape.largest_output + shape.attention_scores)
    return MemoryEstimate(
        parameters=shape.parameters,
        weights=weights,
        gradients=weights,
        optimizer=int(state * weights),
        sparsity=int(SPARSITY_STATE_FACTOR[method] * FLOAT_BYTES * shape.weight_parameters),
        activations=FLOAT_BYTES * max(training, validation),
        checkpoint=FLOAT_BYTES * checkpoint_parameters,
        # DDP copies the gradients into its buckets for the all-reduce.
        buckets=weights if processes > 1 else 0,
        processes=processes,
        per_device=per_device,
    )


def inference_memory(
    shape: ModelShape, *, batch_sizes: Sequence[int], checkpoint_parameters: int = 0
) -> MemoryEstimate:
    """Peak memory of a benchmark: the model, its sparse copy, the weight copies a layer's timing cycles
    through, and the largest batch's forward pass."""
    weights = FLOAT_BYTES * shape.parameters
    batch = max(batch_sizes)
    per_sample = INFERENCE_FACTOR * shape.largest_output + shape.attention_scores
    # A CPU timing cycles a layer through copies of its weight (lbc_catalog.timing), dense then packed.
    rotation = 2 * min(weights, TIMING_ROTATION_BYTES)
    return MemoryEstimate(
        parameters=shape.parameters,
        # The dense model and the N:M (compressed or semi-structured) one, plus the timing's copies.
        weights=2 * weights + rotation,
        gradients=0,
        optimizer=0,
        sparsity=0,
        activations=FLOAT_BYTES * batch * per_sample,
        checkpoint=FLOAT_BYTES * checkpoint_parameters,
    )


def format_bytes(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_count(value: int) -> str:
    for scale, suffix in ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "k")):
        if value >= scale:
            return f"{value / scale:.1f} {suffix}"
    return str(value)


__all__ = [
    "MemoryEstimate",
    "ModelShape",
    "default_input_shape",
    "format_bytes",
    "inference_memory",
    "input_problems",
    "make_divisible",
    "model_arguments",
    "model_shape",
    "training_memory",
]
