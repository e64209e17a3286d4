"""Record activations and gradient statistics of chosen layers in one forward and one backward pass.

Everything here is pure torch. Hooks live only inside :func:`capture` (a context manager), so they are
removed also after an exception, and the model's train/eval flags are restored on the way out.
"""

from __future__ import annotations

import hashlib
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from .modelio import Output, check_layer_names, input_dtype, select_output
from .points import Point, check_layer_point, point_modules, points_for
from .runtime import eval_mode
from .weights import channel_statistics

__all__ = [
    "find_layers",
    "capture",
    "run_model",
    "forward_activations",
    "Captured",
    "fingerprint",
    "LAYER_MODES",
    "SCORES",
    "InferenceModeError",
]

#: What the backward pass differentiates: the target's logit (the paper's), or the target's logit minus the mean
#: of all logits ("contrast": what sets the class apart from the others, one backward pass as well).
SCORES = ("logit", "contrast")


LAYER_MODES = ("conv", "blocks")


_CONV_TYPES = (nn.Conv2d,)


def find_layers(model: nn.Module, mode: str = "conv") -> list[str]:
    """Names of the layers to explain, in registration order.

    ``mode="conv"``: every ``nn.Conv2d``. ``mode="blocks"``: the model's building blocks, found from the top:
    plain containers (``nn.Sequential``, ``nn.ModuleList``, ``nn.ModuleDict``) are looked into; a module
    with one convolution (a convolution, or conv-BN-ReLU) is a block; a module with several is a block
    (ResNet's BasicBlock/Bottleneck, MobileNet's InvertedResidual, DenseNet's dense blocks, GoogLeNet's and
    Inception's inception modules, RegNet's stages) unless it holds a container of such blocks (a backbone
    wrapped in another module, or a stage of blocks), which is looked into. Layers that do not run, or whose
    output is not 4-D, are left out when the model runs (``modelio.resolve_layers``).
    """
    if mode not in LAYER_MODES:
        raise ValueError(f"layer mode {mode!r} is unknown; use one of {LAYER_MODES} or pass layer names")
    named = dict(model.named_modules())
    if mode == "conv":
        names = [n for n, m in named.items() if n and isinstance(m, _CONV_TYPES)]
    else:
        names = _blocks(model)
    if not names:
        raise ValueError(
            f"{type(model).__name__} has no Conv2d layer to explain. INV needs layers whose output is a "
            "4-D feature-map tensor (N, C, H, W); pass layers=[...] with the names of such modules "
            "(see [n for n, _ in model.named_modules()])."
        )
    return names


_PLAIN = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _n_convs(m: nn.Module) -> int:
    return sum(isinstance(s, _CONV_TYPES) for s in m.modules())


def _holds_blocks(m: nn.Module) -> bool:
    """Whether a plain container inside ``m`` holds two or more modules with several convolutions each (a
    stage of residual blocks), i.e. ``m`` is made of blocks rather than being one."""
    for s in m.modules():
        if s is not m and type(s) in _PLAIN and sum(_n_convs(c) >= 2 for c in s.children()) >= 2:
            return True
    return False


def _blocks(model: nn.Module) -> list[str]:
    names: list[str] = []

    def visit(module: nn.Module, prefix: str) -> None:
        for child_name, child in module.named_children():
            name = f"{prefix}{child_name}"
            n = _n_convs(child)
            if n == 0:
                continue
            if type(child) in _PLAIN or (n >= 2 and _holds_blocks(child)):
                visit(child, name + ".")
            else:
                names.append(name)

    if isinstance(model, _CONV_TYPES):
        return []
    visit(model, "")
    return names


@dataclass
class Captured:
    """What one forward+backward pass recorded, in the order the layers fired."""

    logits: torch.Tensor  # (B, num_classes), detached
    order: list[str]
    targets: list[int] = field(default_factory=list)
    activations: dict[str, torch.Tensor] = field(default_factory=dict)  # (B, C, h, w), detached
    guided: dict[str, torch.Tensor] = field(default_factory=dict)  # (B, C) mean_ij((A>0)(G>0)G), float32
    grad_mean: dict[str, torch.Tensor] = field(default_factory=dict)  # (B, C) mean_ij(G), float32
    taylor: dict[str, torch.Tensor] = field(default_factory=dict)  # (B, C) mean_ij(G A), float32
    gradients: dict[str, torch.Tensor] = field(default_factory=dict)  # (B, C, h, w), only with keep_gradients


#: per model, the layers whose output the model changes in place after it is recorded: copied when they fire
_copied: weakref.WeakKeyDictionary[nn.Module, set[str]] = weakref.WeakKeyDictionary()


class _Activations(dict):
    """The recorded activations, {layer: (B, C, h, w)}, and the version of each one recorded without a copy."""

    def __init__(self):
        super().__init__()
        self.versions: dict[str, int] = {}

    def changed(self) -> list[str]:
        """Layers whose recorded output was changed in place since it was recorded."""
        return [n for n, v in self.versions.items() if self[n]._version != v]


@contextmanager
def capture(
    model: nn.Module,
    layers: list[str],
    strict: bool = True,
    keep_gradients: bool = False,
    *,
    spatial_only: bool = False,
    weighting: str | None = None,
    points: dict[str, Point] | None = None,
):
    """Context manager: forward hooks on ``layers`` that record each output, and gradient hooks that reduce
    its gradient to the per-channel statistics INV uses.

    ``points`` (``{layer: Point}``, :func:`inv_widgets.engine.points.points_for`) says where each layer is
    read: by default its own output; for ``layer_point="activation"`` the output of the module call that ends
    its chain convolution -> normalisation -> activation, recorded under the layer's name.

    Yields ``(acts, stats, grads, order)``, filled during the pass: ``stats[name] = (guided, grad_mean,
    taylor)``, each (B, C) (``taylor``: gradient x activation, mean_ij(G A)). An output is recorded as it is,
    without a copy, unless the model is known to change it in place after the layer (an in-place ReLU, as in
    VGG) or it shares memory with another recorded output: then a copy is taken when the layer fires. After
    the forward pass ``acts.changed()`` names the layers whose output changed in place although it was not
    copied; :func:`run_model` then runs the pass again, copying those (once per model and layer). The
    gradient is the gradient of that same tensor. The full gradients are reduced as
    they arrive and dropped (a VGG-16 explanation needs about 55 MB less), unless ``keep_gradients``
    stores them in ``grads`` too. With ``strict`` a layer whose output is not 4-D raises; otherwise it is
    skipped. With ``spatial_only`` a layer whose output has no spatial extent (1 x 1 feature maps, such as the
    convolutions inside squeeze-excitation blocks) is skipped: its maps have nothing to show. ``weighting``
    ("guided" or "taylor") computes that statistic only (the other is None); None computes both.
    """
    check_layer_names(model, layers)
    points = {n: (points or {}).get(n) or Point(n, n, 0, (n,)) for n in layers}
    modules = dict(model.named_modules())
    copy = _copied.setdefault(model, set())
    storages: set[int] = set()
    acts = _Activations()
    stats: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    grads: dict[str, torch.Tensor] = {}
    order: list[str] = []
    handles = []

    def record(name, output):
        if isinstance(output, (tuple, list)):
            output = output[0]
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            if strict:
                shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
                raise ValueError(
                    f"layer {name!r} outputs {shape}, not a 4-D feature map (N, C, H, W); "
                    "choose a convolutional layer or block"
                )
            return
        if name in acts:
            return  # a module called twice (shared weights): keep its first call, consistently
        if spatial_only and output.shape[2] * output.shape[3] == 1:
            return
        order.append(name)
        ptr = output.untyped_storage().data_ptr()
        if name in copy or ptr in storages:
            acts[name] = output.detach().clone()
        else:
            # no copy: the output itself, and its version, to check after the forward pass that nothing
            # changed it in place (``acts.changed()``); a layer whose output is changed (an in-place ReLU
            # after it, as in VGG) is copied from then on
            acts[name] = output.detach()
            acts.versions[name] = output._version
        storages.add(ptr)
        if output.requires_grad:

            def reduce_grad(g, name=name):
                g = g.detach()
                stats[name] = channel_statistics(acts[name], g, weighting)
                if keep_gradients:
                    grads[name] = g

            output.register_hook(reduce_grad)

    def make_hook(targets: dict[int, list[str]]):
        calls = [0]

        def hook(module, inputs, output):
            k = calls[0]
            calls[0] += 1
            for name in targets.get(k, ()):
                record(name, output)

        return hook

    try:
        with eval_mode(model):
            for module, targets in point_modules(points).items():
                handles.append(modules[module].register_forward_hook(make_hook(targets)))
            yield acts, stats, grads, order
    finally:
        for h in handles:
            h.remove()


def run_model(
    model: nn.Module,
    x: torch.Tensor,
    layers: list[str],
    target=None,
    strict: bool = True,
    keep_gradients: bool = False,
    *,
    output: Output = None,
    spatial_only: bool = False,
    weighting: str | None = None,
    layer_point: str = "conv",
    score: str = "logit",
    check=None,
) -> Captured:
    """One forward and one backward pass of a batch ``x`` (B,3,H,W).

    ``target``: None (each image's predicted class), an int, or a sequence of B ints (None in it: that image's
    predicted class). The score
    differentiated is the pre-softmax logit. Only the input's gradient is accumulated (and thrown away):
    no parameter ``.grad`` is left behind and ``requires_grad`` flags are not touched.
    ``keep_gradients`` also keeps the layers' full gradients (for inspection and tests). ``output`` says
    which of the model's outputs holds the logits (:func:`select_output`); ``spatial_only`` leaves out layers
    with 1 x 1 feature maps; ``weighting`` computes that channel statistic only (None: both). The input is cast
    to the model's dtype (a float16 or bfloat16 model runs in its
    own dtype; the weights and maps are computed in float32 from what it records). ``layer_point``: where each
    layer is read (:mod:`inv_widgets.engine.points`: ``"conv"``, the convolution's output, or ``"activation"``,
    after its normalisation and activation). ``score``: ``"logit"`` differentiates the target's logit,
    ``"contrast"`` the target's logit minus the mean of all the logits. ``check(out)``, if given, is called with
    the model's raw output after the forward pass, before anything else is checked or differentiated (to learn
    and check the layers from this pass: ``ModelRunner.capture_first``).
    """
    check_layer_point(layer_point)
    if score not in SCORES:
        raise ValueError(f"score {score!r} is unknown; use one of {list(SCORES)}")
    if torch.is_inference_mode_enabled():
        raise InferenceModeError(
            "INV needs the gradients of the model's pass, and torch.inference_mode() turns "
            "them off for good; explain outside the `with torch.inference_mode():` block "
            "(torch.no_grad() is fine: INV turns gradients back on for its own pass)"
        )
    points = _points(model, layers, layer_point, x)
    for _ in range(2):
        try:
            return _run_model(
                model,
                x,
                layers,
                target,
                strict,
                keep_gradients,
                output=output,
                spatial_only=spatial_only,
                weighting=weighting,
                points=points,
                score=score,
                check=check,
            )
        except _ChangedInPlace:  # those layers are copied from now on: run the pass again
            continue
    raise RuntimeError("the model changes the recorded layer outputs in place although they are copied")


class InferenceModeError(RuntimeError):
    """INV was asked to explain inside ``torch.inference_mode()``, where no gradient can be had."""


class _ChangedInPlace(Exception):
    """A recorded layer output was changed in place by the model after the layer (see ``capture``)."""


def _points(model, layers, layer_point, x):
    if layer_point == "conv":
        return None
    check_layer_names(model, layers)
    return points_for(model, layers, layer_point, x.detach().to(input_dtype(model)))


def forward_activations(
    model: nn.Module, x: torch.Tensor, layers: list[str], *, layer_point: str = "conv", output: Output = None
) -> dict[str, torch.Tensor]:
    """The maps ``{layer: (B, C, h, w)}`` of a forward pass without gradients, read at ``layer_point`` (copies:
    nothing the model changes in place afterwards reaches them)."""
    points = _points(model, layers, check_layer_point(layer_point), x)
    x = x.detach().to(input_dtype(model))
    for _ in range(2):
        with torch.no_grad(), capture(model, layers, strict=True, points=points) as (acts, _, _, _):
            select_output(model(x), output)
            changed = acts.changed()
        if not changed:
            return dict(acts)
        _copied[model].update(changed)
    raise RuntimeError("the model changes the recorded layer outputs in place although they are copied")


def _run_model(
    model,
    x,
    layers,
    target,
    strict,
    keep_gradients,
    *,
    output,
    spatial_only,
    weighting,
    points=None,
    score="logit",
    check=None,
) -> Captured:
    x = x.detach().to(input_dtype(model)).clone().requires_grad_(True)
    with (
        torch.enable_grad(),
        capture(
            model, layers, strict, keep_gradients, spatial_only=spatial_only, weighting=weighting, points=points
        ) as (acts, stats, grads, order),
    ):
        out = model(x)
        changed = acts.changed()
        if changed:
            _copied[model].update(changed)
            raise _ChangedInPlace(changed)
        if check is not None:
            check(out)
        logits, which = select_output(out, output)
        if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
            raise ValueError(
                f"the model's output{' ' + which if which else ''} has shape {tuple(logits.shape)}; a "
                "classifier returning logits (batch, classes) is expected (choose another output with "
                "output=...)"
            )
        n_classes = logits.shape[1]
        if target is None:
            t = logits.argmax(1)
        else:
            if not isinstance(target, (int, torch.Tensor)) and any(v is None for v in target):  # those: predicted
                pred = logits.argmax(1).tolist()
                target = [pred[i] if v is None else v for i, v in enumerate(target)]
            t = torch.as_tensor(target, dtype=torch.long, device=logits.device).reshape(-1)
            if t.numel() == 1:
                t = t.expand(x.shape[0])
            if t.numel() != x.shape[0]:
                raise ValueError(f"got {t.numel()} targets for {x.shape[0]} images")
            bad = [int(v) for v in t.tolist() if not 0 <= v < n_classes]
            if bad:
                raise ValueError(
                    f"target class {bad[0]} is outside the model's {n_classes} classes (0..{n_classes - 1})"
                )
        if not order:
            raise ValueError(
                "none of the chosen layers produced a 4-D feature map in the forward pass; "
                "choose convolutional layers or blocks that the model actually runs"
                + (
                    " (layers with 1 x 1 feature maps are left out: a larger input gives them spatial extent, or name "
                    "them in layers=[...] to explain them anyway)"
                    if spatial_only
                    else ""
                )
            )
        value = logits.gather(1, t[:, None])
        if score == "contrast":
            value = value - logits.mean(1, keepdim=True)
        torch.autograd.backward(value.sum(), inputs=[x])
    for n in order:
        if n not in stats:  # layer not on the path to the score (e.g. an unused branch): zero gradient
            zero = torch.zeros(acts[n].shape[:2], device=acts[n].device)
            stats[n] = (zero, zero, zero)
            if keep_gradients:
                grads[n] = torch.zeros_like(acts[n])
    return Captured(
        logits=logits.detach(),
        order=list(order),
        targets=[int(v) for v in t.tolist()],
        activations=dict(acts),
        guided={n: s[0] for n, s in stats.items()},
        grad_mean={n: s[1] for n, s in stats.items()},
        taylor={n: s[2] for n, s in stats.items()},
        gradients=dict(grads),
    )


def fingerprint(model: nn.Module) -> str:
    """A short, stable id of a model's architecture and weights (a strided sample of every tensor)."""
    h = hashlib.sha1(type(model).__name__.encode())
    with torch.no_grad():
        for name, t in model.state_dict().items():
            h.update(name.encode())
            h.update(str(tuple(t.shape)).encode())
            if t.numel():
                flat = t.detach().reshape(-1)
                step = max(1, flat.numel() // 4096)
                sample = flat[::step].to("cpu", torch.float64)
                h.update(sample.numpy().tobytes())
    return h.hexdigest()[:16]
