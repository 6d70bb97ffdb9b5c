"""Snapshot and restore: everything a range test's sweep changes, kept in CPU memory.

:class:`Snapshot` copies every parameter and buffer of the model (BatchNorm statistics
included, non-persistent buffers too), their gradients, every module's train/eval mode, the
optimizer's state and hyperparameters, the torch, CUDA, NumPy and Python RNG states, the
loader's own generators and an AMP ``GradScaler``; :meth:`Snapshot.restore` puts all of it
back, as often as asked. The copy lives in CPU memory: no temporary files, and no second copy
of the weights on the GPU.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim import Optimizer

__all__ = ["Snapshot", "generators_of", "tensors_of"]


def tensors_of(model: nn.Module) -> list[torch.Tensor]:
    """Every parameter and buffer once (shared ones too, non-persistent buffers too)."""
    seen: dict[int, torch.Tensor] = {}
    for t in [*model.parameters(), *model.buffers()]:
        seen.setdefault(id(t), t)
    return list(seen.values())


def _slots_of(model: nn.Module) -> list[tuple[dict[str, Any], str, torch.Tensor]]:
    """Where each parameter and buffer lives: (the module's dict, name, the tensor there)."""
    return [
        (slots, name, tensor)
        for module in model.modules()
        for slots in (module._parameters, module._buffers)
        for name, tensor in slots.items()
        if tensor is not None
    ]


def _to_cpu(obj: Any) -> Any:
    """A deep copy with every tensor copied into CPU memory (pinned, for tensors on a GPU, so
    the copies both ways run at full speed; call ``_synchronize`` before reading them)."""
    if isinstance(obj, torch.Tensor):
        if obj.device.type == "cuda":
            out = torch.empty(obj.shape, dtype=obj.dtype, device="cpu", pin_memory=True)
            return out.copy_(obj.detach(), non_blocking=True)
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


def _synchronize() -> None:
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _same_layout(live: Mapping[str, Any], saved: Mapping[str, Any]) -> bool:
    if live.keys() != saved.keys():
        return False
    return all(
        not isinstance(v, torch.Tensor)
        or (
            isinstance(live[k], torch.Tensor)
            and live[k].shape == v.shape
            and live[k].dtype == v.dtype
        )
        for k, v in saved.items()
    )


def _put_back(live: dict[str, Any], key: str, saved: Any) -> None:
    """Write ``saved`` into ``live[key]``, in place when both are tensors."""
    if isinstance(saved, torch.Tensor) and isinstance(live.get(key), torch.Tensor):
        live[key].copy_(saved, non_blocking=True)
    else:
        live[key] = copy.deepcopy(saved)


class Snapshot:
    """Everything a sweep changes, copied into CPU memory; :meth:`restore` puts it back."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: Optimizer,
        scaler: torch.amp.GradScaler | None,
        generators: list[torch.Generator],
    ) -> None:
        self.optimizer = optimizer
        # The tensors themselves, and where they live: a forward pass may replace a buffer
        # (`self.count = self.count + 1`), and restore puts the original object back there.
        self.slots = _slots_of(model)
        self.values = [(t, _to_cpu(t)) for t in tensors_of(model)]
        self.grads = [(p, None if p.grad is None else _to_cpu(p.grad)) for p in model.parameters()]
        self.modes = [(m, m.training) for m in model.modules()]
        self.optimizer_state = _to_cpu(optimizer.state_dict())
        _synchronize()
        self.scaler = scaler
        self.scaler_state = (
            scaler.state_dict() if scaler is not None and scaler.is_enabled() else None
        )
        self.torch_rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        self.numpy_rng = np.random.get_state()  # noqa: NPY002  (the global RNG users seed)
        self.python_rng = random.getstate()
        self.generators = [(g, g.get_state()) for g in generators]

    def _restore_optimizer(self) -> None:
        """Copy the saved state back into the optimizer's own tensors when they have the same
        layout (no allocation, no second copy on the device); else drop the sweep's state and
        load the saved one."""
        opt, saved = self.optimizer, self.optimizer_state
        params = [p for group in opt.param_groups for p in group["params"]]
        live = {i: opt.state[p] for i, p in enumerate(params) if p in opt.state}
        if live.keys() == saved["state"].keys() and all(
            _same_layout(live[i], entries) for i, entries in saved["state"].items()
        ):
            for i, entries in saved["state"].items():
                for key, value in entries.items():
                    _put_back(live[i], key, value)
            for group, saved_group in zip(opt.param_groups, saved["param_groups"], strict=True):
                for key, value in saved_group.items():
                    if key != "params":
                        _put_back(group, key, value)
        else:
            opt.state.clear()
            # load_state_dict may keep the very tensors it is given: give it a copy, so a
            # second restore (repeats) does not find them trained on.
            opt.load_state_dict(_to_cpu(saved))

    def restore(self) -> None:
        for slots, name, tensor in self.slots:
            slots[name] = tensor
        with torch.no_grad():
            for live, saved in self.values:
                live.copy_(saved, non_blocking=True)
            # Free the sweep's gradients before making the saved ones, so the two never sit on
            # the device together.
            for param, _ in self.grads:
                param.grad = None
            for param, grad in self.grads:
                if grad is not None:
                    param.grad = torch.empty_like(param).copy_(grad, non_blocking=True)
            self._restore_optimizer()
        _synchronize()  # the pinned copies are read asynchronously; finish before returning
        for module, training in self.modes:
            module.training = training
        if self.scaler is not None and self.scaler_state is not None:
            self.scaler.load_state_dict(self.scaler_state)
        torch.set_rng_state(self.torch_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        np.random.set_state(self.numpy_rng)  # noqa: NPY002
        random.setstate(self.python_rng)
        for generator, state in self.generators:
            generator.set_state(state)


def generators_of(loader: Iterable[Any]) -> list[torch.Generator]:
    """The loader's own RNGs (a DataLoader's, its sampler's, its batch sampler's sampler's)."""
    found: dict[int, torch.Generator] = {}
    sampler = getattr(loader, "sampler", None)
    batch_sampler = getattr(loader, "batch_sampler", None)
    for owner in (loader, sampler, getattr(batch_sampler, "sampler", None)):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator):
            found.setdefault(id(generator), generator)
    return list(found.values())
