"""The lifecycle every N:M method shares: prepare a model, follow training, finalize to plain weights.

Masks are attached with ``torch.nn.utils.parametrize`` so user model code stays untouched; finalize
removes the parametrization and leaves plain weights with exact zeros.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from lbc_core.sparsity.pattern import NMPattern, count_violations
from lbc_core.sparsity.selection import DenseDefault, LayerPolicy, LayerSelection, select_layers


class SparsifierStateError(RuntimeError):
    """The sparsifier was used out of order (e.g. finalize before prepare)."""


@dataclass(frozen=True)
class LayerResult:
    name: str
    kind: str
    shape: tuple[int, ...]
    group_direction: str
    density: float
    nonzeros: int
    verified_nm: bool
    violating_groups: int
    layout: str = "out_in"  # the weight layout groups were taken in (see lbc_core.sparsity.pattern)


@dataclass(frozen=True)
class SparsityReport:
    """What finalize produced: per-layer density and an exact N:M verification, and what was skipped."""

    method: str
    pattern: str
    semantics: str
    layers: tuple[LayerResult, ...]
    skipped: tuple[dict[str, Any], ...]
    sparse_params: int
    dense_params: int
    nonzero_params: int

    @property
    def all_verified(self) -> bool:
        return all(layer.verified_nm for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["all_verified"] = self.all_verified
        return data


KEEP_N_SEMANTICS = "N:M keeps N of every M consecutive weights along the reduction dimension"


class MaskedWeight(nn.Module):
    """Parametrization: the layer computes with ``weight * mask`` (a cached 0/1 mask).

    The mask is stored in the weight's dtype: multiplying by a bool tensor takes PyTorch's
    mixed-dtype path, about 30x slower on CPU than a same-dtype multiply.
    """

    mask: torch.Tensor

    def __init__(self, mask: torch.Tensor, dtype: torch.dtype) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(dtype))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


@dataclass
class _Prepared:
    model: nn.Module
    selection: LayerSelection
    modules: dict[str, nn.Module] = field(default_factory=dict)


class Sparsifier:
    """Base class; subclasses choose the parametrization and how masks evolve during training.

    Call order: ``prepare(model)`` -> build the optimizer -> ``calibrate(run_forward)`` where
    ``needs_calibration`` -> every step ``on_step_start(...)``, forward, backward, optimizer step
    -> ``finalize()``. With :meth:`defer_score_steps`, a step is ``on_step_start``, one or more
    forward/backward passes, ``step_scores(...)``, optimizer step.
    """

    method = "base"

    def __init__(self, pattern: NMPattern, policy: LayerPolicy | None = None) -> None:
        self.pattern = pattern
        self.policy = policy or LayerPolicy()
        self._prepared: _Prepared | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def prepare(
        self, model: nn.Module, dense_defaults: Mapping[str, DenseDefault] | None = None
    ) -> LayerSelection:
        """Attach masks; ``dense_defaults`` name the stem and heads (the model source knows them), ``None``
        takes the first and last weight layer."""
        if self._prepared is not None:
            raise SparsifierStateError("prepare() was already called on this sparsifier")
        selection = self._select(model, dense_defaults)
        prepared = _Prepared(model, selection)
        for target in selection.targets:
            module = model.get_submodule(target.name)
            weight: torch.Tensor = module.weight  # type: ignore[assignment]
            parametrize.register_parametrization(
                module, "weight", self._make_parametrization(weight, target.layout)
            )
            prepared.modules[target.name] = module
        self._prepared = prepared
        return selection

    @property
    def needs_calibration(self) -> bool:
        """Whether :meth:`calibrate` must run (after ``prepare``, before training) for this method."""
        return False

    def calibrate(self, run_forward: Callable[[], None]) -> None:
        """Read activation statistics while ``run_forward()`` runs the dense model over calibration
        data (in eval mode, without gradients). Methods that need no data ignore it."""

    def on_step_start(self, epoch: int, step: int, steps_per_epoch: int, lr: float) -> None:
        """Called before every training step's forward pass with the step's learning rate."""

    def defer_score_steps(self, enabled: bool = True) -> None:
        """Methods that learn from gradients inside backward (LBC) then learn once per optimizer step,
        in :meth:`step_scores`, instead of once per backward pass. Needed for gradient accumulation,
        clipping and loss scaling; other methods have nothing to defer."""

    def step_scores(self, grad_scale: float = 1.0, *, skip: bool = False) -> None:
        """With deferred steps: learn once from the signal summed since the last call, times
        ``grad_scale`` (the factor the weights' gradients got: clipping times 1 / loss scale); ``skip``
        drops it (a step the optimizer skips, e.g. on an overflow)."""

    def finalize(self) -> SparsityReport:
        """Make the masks exact and permanent: plain weights with exact zeros remain."""
        prepared = self._require_prepared()
        self._before_finalize()
        results = []
        for name, module in prepared.modules.items():
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            weight: torch.Tensor = module.weight.detach()  # type: ignore[operator]
            results.append(self._layer_result(name, weight))
        report = self._build_report(prepared, tuple(results))
        self._prepared = None
        return report

    # -- inspection ------------------------------------------------------------------------------
    @property
    def selection(self) -> LayerSelection:
        return self._require_prepared().selection

    def masks(self) -> dict[str, torch.Tensor]:
        """Current boolean masks by layer name (dense layers are absent)."""
        prepared = self._require_prepared()
        return {name: self._parametrization(m).mask.detach() != 0 for name, m in prepared.modules.items()}

    def metrics(self) -> dict[str, float]:
        masks = self.masks() if self._prepared is not None else {}
        total = sum(m.numel() for m in masks.values())
        kept = sum(int(m.sum()) for m in masks.values())
        return {"mask_density": kept / total if total else 1.0}

    def state_dict(self) -> dict[str, Any]:
        """Non-tensor state; tensor state lives in the model's buffers and is saved with it."""
        return {"method": self.method, "pattern": str(self.pattern)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("method") != self.method or state.get("pattern") != str(self.pattern):
            raise SparsifierStateError(
                f"checkpoint was written by {state.get('method')} {state.get('pattern')}, "
                f"not {self.method} {self.pattern}"
            )

    # -- hooks for subclasses ----------------------------------------------------------------------
    def _select(self, model: nn.Module, dense_defaults: Mapping[str, DenseDefault] | None) -> LayerSelection:
        return select_layers(model, self.pattern, self.policy, dense_defaults)

    def _make_parametrization(self, weight: torch.Tensor, layout: str) -> nn.Module:
        raise NotImplementedError

    def _before_finalize(self) -> None:
        """Subclasses settle their final masks here."""

    # -- helpers ---------------------------------------------------------------------------------
    def _require_prepared(self) -> _Prepared:
        if self._prepared is None:
            raise SparsifierStateError("call prepare(model) first (or the sparsifier was already finalized)")
        return self._prepared

    @staticmethod
    def _parametrization(module: nn.Module) -> Any:
        return module.parametrizations["weight"][0]  # type: ignore[index]

    def _iter_parametrizations(self) -> list[tuple[str, Any]]:
        prepared = self._require_prepared()
        return [(name, self._parametrization(m)) for name, m in prepared.modules.items()]

    def _layer_result(self, name: str, weight: torch.Tensor) -> LayerResult:
        target = next(t for t in self._require_prepared().selection.targets if t.name == name)
        nonzeros = int((weight != 0).sum())
        violations = count_violations(weight, self.pattern, target.layout)
        return LayerResult(
            name=name,
            kind=target.kind,
            shape=tuple(weight.shape),
            group_direction=target.group_direction,
            density=nonzeros / weight.numel(),
            nonzeros=nonzeros,
            verified_nm=violations == 0,
            violating_groups=violations,
            layout=target.layout,
        )

    def _build_report(self, prepared: _Prepared, results: tuple[LayerResult, ...]) -> SparsityReport:
        sparse_params = sum(r.nonzeros for r in results)
        total_selected = sum(int(torch.Size(r.shape).numel()) for r in results)
        all_params = sum(p.numel() for p in prepared.model.parameters())
        return SparsityReport(
            method=self.method,
            pattern=str(self.pattern),
            semantics=KEEP_N_SEMANTICS,
            layers=results,
            skipped=tuple(asdict(s) for s in prepared.selection.skipped),
            sparse_params=total_selected,
            dense_params=all_params,
            nonzero_params=all_params - total_selected + sparse_params,
        )
