"""Where a layer's feature maps are read: the convolution's own output, or what the network hands on.

``layer_point="conv"`` reads a convolution's output as it leaves the ``Conv2d`` module: before its BatchNorm
(the demo CNN, ResNets) and before its ReLU (torchvision's VGG, whose ReLUs are separate modules).
``layer_point="activation"`` reads the same channels where the network hands them on: at the end of the chain
convolution -> normalisation -> activation that the forward pass runs on the convolution's output, recorded under
the convolution's name. The chain is found from the module calls of one forward pass (:func:`trace_points`):

- a normalisation module (BatchNorm, GroupNorm, InstanceNorm) whose input is the convolution's output continues
  it, and an activation module (ReLU, ReLU6, LeakyReLU, SiLU, GELU, Hardswish, ...) whose input is the
  convolution's or the normalisation's output ends it; an in-place ReLU (VGG's, the demo's) is followed like
  any other;
- a shared module (ResNet's one ``relu`` called several times per block) counts by its call: the point is
  "the second call of ``layer1.0.relu``", not the module;
- a tensor changed in place before the next module sees it (ResNet's ``out += identity`` between ``bn2`` and
  ``relu``) ends the chain where it was: the maps stay the block's own, before the shortcut is added;
- a convolution with no normalisation or activation module after it (or one whose activation is a function
  call in ``forward``, ``F.relu(x)``) stays at its output; a layer that is not a convolution (a block of
  ``layer_mode="blocks"``, a module named by hand) is read at its own output under either point.

Capture (:func:`inv_widgets.engine.capture.run_model`) records and differentiates the maps at the point, and
ablation (:class:`inv_widgets.engine.ablation.ModelProbe`) zeroes channels at the same point, so that removing
a channel means removing what the network passes on (zeroing a convolution's output before its BatchNorm
leaves the constant ``beta - gamma * mu / sigma``, which a ReLU often passes).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import nn

from .runtime import eval_mode

__all__ = ["LAYER_POINTS", "Point", "check_layer_point", "trace_points", "points_for", "point_modules"]

#: Where a layer's maps are read (``Session(layer_point=...)``).
LAYER_POINTS = ("activation", "conv")

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)
_ACTS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardtanh,
    nn.Softplus,
)


def check_layer_point(point) -> str:
    """``point`` if it is one of :data:`LAYER_POINTS`, else a ValueError naming the choices."""
    if point not in LAYER_POINTS:
        raise ValueError(
            f'layer_point {point!r} is unknown; use "activation" (each convolution\'s maps where the '
            'network hands them on: after its BatchNorm and activation) or "conv" (the convolution\'s '
            "own output)"
        )
    return point


@dataclass(frozen=True)
class Point:
    """Where layer ``layer``'s maps are read: the output of call number ``call`` (0 = first) of module
    ``module`` in a forward pass; ``chain`` names the modules from the layer to that point."""

    layer: str
    module: str
    call: int
    chain: tuple[str, ...]


def _own(layer: str) -> Point:
    return Point(layer, layer, 0, (layer,))


#: per model: {layer: Point} of every convolution traced so far (module calls do not change between passes)
_traced: weakref.WeakKeyDictionary[nn.Module, dict] = weakref.WeakKeyDictionary()

#: the trace runs on the image shrunk to this longer side: which modules follow a convolution does not depend
#: on the input's size, and the pass costs a fraction of one at full size (a model that cannot run so small, or
#: that skips a requested convolution there, is traced again at full size)
TRACE_SIDE = 64


def _small(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    if max(h, w) <= TRACE_SIDE:
        return x
    f = TRACE_SIDE / max(h, w)
    size = (max(1, round(h * f)), max(1, round(w * f)))
    return torch.nn.functional.interpolate(x.float(), size=size, mode="bilinear", align_corners=False).to(x.dtype)


def points_for(model: nn.Module, layers, point: str, x: torch.Tensor | None = None) -> dict[str, Point]:
    """``{layer: Point}`` for ``layers`` under ``point``: each layer's own output for ``"conv"``; for
    ``"activation"`` the end of its chain, traced on ``x`` in one forward pass without gradients of its first
    image, shrunk to :data:`TRACE_SIDE` pixels: every convolution of the model at once, kept for the model's
    life (another choice of layers needs no other pass)."""
    check_layer_point(point)
    layers = list(layers)
    if point == "conv":
        return {n: _own(n) for n in layers}
    per_model = _traced.setdefault(model, {})
    if any(n not in per_model for n in layers):
        if x is None:
            raise ValueError("the activation point of a layer is found from one forward pass: give an input")
        named = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        wanted = list(dict.fromkeys(named + layers))
        convs = {n for n in layers if n in named}
        got = None
        if max(x.shape[-2:]) > TRACE_SIDE:
            try:
                got, seen = _trace(model, _small(x[:1]), wanted)
            except Exception:  # too small for this model: the full size below
                got = None
            if got is not None and not convs <= seen:  # a requested convolution did not run at that size
                got = None
        if got is None:
            got, _ = _trace(model, x[:1], wanted)
        per_model.update(got)
    return {n: per_model[n] for n in layers}


def trace_points(model: nn.Module, x: torch.Tensor, layers) -> dict[str, Point]:
    """Follow each convolution of ``layers`` through one forward pass of ``x`` (no gradients, eval mode) to
    where the network hands its maps on (see the module docstring)."""
    return _trace(model, x, layers)[0]


def _trace(model: nn.Module, x: torch.Tensor, layers) -> tuple[dict[str, Point], set[str]]:
    """:func:`trace_points`, and the convolutions of ``layers`` that ran."""
    named = dict(model.named_modules())
    layers = list(layers)
    convs = {n for n in layers if isinstance(named.get(n), nn.Conv2d)}
    points = {n: _own(n) for n in layers}
    open_: dict[int, tuple] = {}  # id(tensor) -> (tensor, layer, version, stage: 0 conv, 1 norm, 2 act)
    calls: dict[str, int] = {}
    pending: dict[str, list] = {}  # module -> stack of the chain entries its running calls continue
    seen: set[str] = set()
    handles = []

    def pre(name):
        def hook(module, inputs):
            calls[name] = calls.get(name, -1) + 1
            inp = inputs[0] if inputs else None
            entry = open_.get(id(inp)) if isinstance(inp, torch.Tensor) else None
            ok = (
                entry is not None
                and entry[0] is inp
                and inp._version == entry[2]  # not changed in place since
                and (
                    (isinstance(module, _NORMS) and entry[3] == 0)  # a norm right after the convolution
                    or (isinstance(module, _ACTS) and entry[3] in (0, 1))
                )
            )  # an activation after either
            pending.setdefault(name, []).append((entry, calls[name]) if ok else None)

        return hook

    def post(name):
        def hook(module, inputs, output):
            got = pending.get(name, [None]).pop() if pending.get(name) else None
            out = output[0] if isinstance(output, (tuple, list)) else output
            if not isinstance(out, torch.Tensor):
                return
            if name in convs and name not in seen:
                seen.add(name)
                open_[id(out)] = (out, name, out._version, 0)
            if got is not None:
                entry, call = got
                layer = entry[1]
                open_.pop(id(entry[0]), None)
                prev = points[layer]
                points[layer] = Point(layer, name, call, prev.chain + (name,))
                stage = 2 if isinstance(module, _ACTS) else 1
                if stage < 2:
                    open_[id(out)] = (out, layer, out._version, stage)

        return hook

    for name, m in named.items():
        if name in convs or isinstance(m, _NORMS + _ACTS):
            handles.append(m.register_forward_pre_hook(pre(name)))
            handles.append(m.register_forward_hook(post(name)))
    try:
        with eval_mode(model), torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        open_.clear()
    return points, seen


def point_modules(points: dict[str, Point]) -> dict[str, dict[int, list[str]]]:
    """``{module: {call: [layers read there]}}``: the hooks a pass needs to read every point."""
    out: dict[str, dict[int, list[str]]] = {}
    for layer, p in points.items():
        out.setdefault(p.module, {}).setdefault(p.call, []).append(layer)
    return out
