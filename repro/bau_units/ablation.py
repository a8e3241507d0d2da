"""Unit ablation by forward hooks: zero chosen channels ("units") of one layer of a network.

Bau et al. intervene on a layer by zeroing the feature maps of chosen units in its output
(the official code's `model.edit_layer(layer, rule=lambda x: x[:, units] = 0)`, davidbau/dissect
`experiment/intervention_experiment.py`). Here the same edit is a forward hook, so any
`nn.Module` can be edited without wrapping it:

    with ablate(model, "conv3", [4, 17]):        # units 4 and 17 of model.conv3 are zero
        logits = model(x)

Ranking all units of a layer needs one ablation per unit, and the paper's test many sets of
units (each class's top units, random units, all but the top units). `ablate_each` does them
in one forward pass per batch: the layer's output h (B, C, ...) is replaced by S copies stacked
on the batch dimension, copy j with `units[j]` (a unit, or a set of units) zeroed, so everything
after the layer sees S·B samples while everything before it runs once:

    with ablate_each(model, "conv3", range(128)):
        logits = model(x).view(128, len(x), -1)  # logits[j]: the batch with unit j ablated
    with ablate_each(model, "conv3", [[4, 17], [3], []]):
        logits = model(x).view(3, len(x), -1)    # two sets, one unit, nothing removed

That needs a network whose computation after the layer treats every sample of the batch on its
own (convolutions, pooling, eval-mode batch norm, dense layers, reshapes that keep the batch
dimension first); a layer that mixes samples (train-mode batch norm, a reshape to a fixed batch
size) would see other units' copies, so `ablate_each` refuses a model in training mode.

Map from the paper to the code:
- "Units are removed by forcing the specified unit to output zero and leaving the rest of the
  network intact" (`edit_layer(layer, rule=zero_some_units)` in the code) -> `ablate`
- the code's loops over units (`for unit in unit_list: test_perclass_pra(..., ablated_units=
  [unit])`), run as copies of one batch -> `ablate_each`
- a layer named as the code names it (`features.conv5_3`, `layer4`) -> `resolve_layer`; its
  number of units, probed -> `layer_units`
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from repro import ReproError

__all__ = ["ablate", "ablate_each", "layer_units", "resolve_layer"]


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> nn.Module:
    """The submodule `layer` names (`"conv3"`, `"main.2"`, as `model.named_modules()` spells
    it), or `layer` itself when it is a module of `model`."""
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise ReproError("ablate: the layer given is not a module of the model")
        return layer
    modules = dict(model.named_modules())
    if layer not in modules:
        known = ", ".join(n for n in modules if n)
        raise ReproError(f"ablate: the model has no layer {layer!r} (layers: {known})")
    return modules[layer]


def _unit_list(units: Iterable[int] | Tensor, channels: int) -> list[int]:
    out = [int(u) for u in (units.tolist() if isinstance(units, Tensor) else units)]
    bad = [u for u in out if not 0 <= u < channels]
    if bad:
        raise ReproError(f"ablate: unit(s) {bad} outside the layer's {channels} units")
    return out


@torch.no_grad()
def layer_units(model: nn.Module, layer: str | nn.Module, example: Tensor) -> int:
    """The number of units (channels, dimension 1 of the output) of `layer`, probed with one
    forward pass of `example` (a batch of one or more inputs) in eval mode."""
    seen: list[int] = []
    handle = resolve_layer(model, layer).register_forward_hook(
        lambda _m, _i, out: seen.append(int(out.shape[1]))
    )
    was = model.training
    try:
        model.eval()
        model(example[:1])
    finally:
        handle.remove()
        model.train(was)
    return seen[0]


@contextmanager
def ablate(
    model: nn.Module, layer: str | nn.Module, units: Iterable[int] | Tensor
) -> Iterator[nn.Module]:
    """Within the block, the output of `layer` has channels `units` set to zero (for every sample,
    at every position); an empty `units` leaves the model unchanged. The hook returns a new
    tensor (the layer's own output is not modified in place) and is removed on exit, also on an
    exception. Yields the model."""
    module = resolve_layer(model, layer)
    chosen = list(units.tolist() if isinstance(units, Tensor) else units)

    def hook(_module: nn.Module, _inputs: tuple[Tensor, ...], out: Tensor) -> Tensor:
        if not chosen:
            return out
        index = torch.tensor(_unit_list(chosen, out.shape[1]), device=out.device)
        keep = torch.ones(out.shape[1], dtype=out.dtype, device=out.device)
        keep[index] = 0
        return out * keep.view(1, -1, *([1] * (out.dim() - 2)))

    handle = module.register_forward_hook(hook)
    try:
        yield model
    finally:
        handle.remove()


def _keep_matrix(sets: Sequence[list[int]], channels: int, like: Tensor) -> Tensor:
    """(S, C): 0 where set j removes unit c, else 1."""
    keep = torch.ones(len(sets), channels, dtype=like.dtype, device=like.device)
    for j, chosen in enumerate(sets):
        if chosen:
            keep[j, _unit_list(chosen, channels)] = 0
    return keep


@contextmanager
def ablate_each(
    model: nn.Module, layer: str | nn.Module, units: Sequence[int | Iterable[int]]
) -> Iterator[nn.Module]:
    """Within the block, a forward pass of a batch of B inputs returns S·B outputs, S =
    len(units): block j (rows j·B … j·B + B − 1) is the batch with `units[j]` of `layer` zeroed
    (one unit, or a collection of units), exactly what `ablate(model, layer, ...)` gives for
    that item. The layers before `layer` run once, the ones after it on the S·B samples. Needs
    `model.eval()` (see the module docstring); yields the model."""
    if model.training:
        raise ReproError(
            "ablate_each: put the model in eval mode (batch statistics would mix the copies)"
        )
    module = resolve_layer(model, layer)
    sets = [_as_set(item) for item in (units.tolist() if isinstance(units, Tensor) else units)]
    if not sets:
        raise ReproError("ablate_each: give at least one unit (or set of units)")

    cache: dict[tuple[int, torch.dtype, torch.device], Tensor] = {}

    def hook(_module: nn.Module, _inputs: tuple[Tensor, ...], out: Tensor) -> Tensor:
        key = (out.shape[1], out.dtype, out.device)
        if key not in cache:
            cache[key] = _keep_matrix(sets, out.shape[1], out)
        keep = cache[key]
        s, b = keep.shape[0], out.shape[0]
        shape = (s, 1, out.shape[1], *([1] * (out.dim() - 2)))
        return (out.unsqueeze(0) * keep.view(shape)).reshape(s * b, *out.shape[1:])

    handle = module.register_forward_hook(hook)
    try:
        yield model
    finally:
        handle.remove()


def _as_set(item: int | Iterable[int] | Tensor) -> list[int]:
    """One item of `ablate_each`'s `units` as a list of units."""
    if isinstance(item, Tensor):
        item = item.tolist()
    return [int(item)] if isinstance(item, int) else [int(u) for u in item]
