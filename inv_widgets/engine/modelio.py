"""What a model is asked and what it answers: the layer names people give, which of its outputs holds the
logits, the dtype it computes in, whether its layers run and give feature maps, why it failed to run.

Pure torch; warnings (``warnings.warn``) where a person should know what was chosen for them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .request import check_module_names
from .runtime import eval_mode

__all__ = [
    "Output",
    "input_dtype",
    "describe_output",
    "select_output",
    "check_layer_names",
    "layer_names",
    "watch_layers",
    "probe_layers",
    "resolve_layers",
    "check_layers_ran",
    "warn_one_layer",
    "failure_message",
]

#: Which of a model's outputs holds the logits: an index (tuple/list), a key (dict), or a callable.
Output = int | str | Callable[[Any], Any] | None


def input_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype the model computes in (its first floating parameter or buffer; float32 if none)."""
    for t in model.parameters():
        if t.is_floating_point():
            return t.dtype
    for t in model.buffers():
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def describe_output(out: Any) -> str:
    """What a model returned, in words: ``"a tuple of 2 outputs: [0] (1, 512), [1] (1, 10)"``."""

    def shape(v):
        return str(tuple(v.shape)) if isinstance(v, torch.Tensor) else type(v).__name__

    if isinstance(out, torch.Tensor):
        return f"a tensor {shape(out)}"
    if isinstance(out, Mapping):
        return f"a {type(out).__name__} of {len(out)} outputs: " + ", ".join(
            f"[{k!r}] {shape(v)}" for k, v in out.items()
        )
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)} outputs: " + ", ".join(
            f"[{i}] {shape(v)}" for i, v in enumerate(out)
        )
    return f"a {type(out).__name__}"


def select_output(out: Any, output: Output = None) -> tuple[torch.Tensor, str]:
    """The logits among what a model returned, and which output that is (``"[1]"``, ``"['logits']"``, ``""``).

    ``output``: an index into a tuple or list, a key of a dict, a callable ``f(out) -> tensor``, or None: a
    tensor as it is, the first item of a tuple or list, a dict's ``"logits"`` or else its first value.
    """
    if callable(output):
        got, which = output(out), f"{getattr(output, '__name__', 'output')}(...)"
    elif output is None:
        if isinstance(out, torch.Tensor):
            return out, ""
        if isinstance(out, Mapping):
            if not out:
                raise ValueError("the model returned an empty dict; a classifier returning logits is expected")
            key = "logits" if "logits" in out else next(iter(out))
            got, which = out[key], f"[{key!r}]"
        elif isinstance(out, (tuple, list)) and len(out):
            got, which = out[0], "[0]"
        else:
            got, which = out, ""
    elif isinstance(output, (bool, float)):
        raise TypeError(f"output must be an index, a key or a callable, got {output!r}")
    elif isinstance(out, Mapping):
        if output not in out:
            raise ValueError(f"output {output!r} is not among the model's outputs; it returned {describe_output(out)}")
        got, which = out[output], f"[{output!r}]"
    elif isinstance(out, (tuple, list)) and isinstance(output, int):
        if not -len(out) <= output < len(out):
            raise ValueError(
                f"output {output} is not one of the model's {len(out)} outputs; it returned {describe_output(out)}"
            )
        got, which = out[output], f"[{output}]"
    elif isinstance(output, str) and hasattr(out, output):
        got, which = getattr(out, output), f".{output}"
    else:
        raise ValueError(
            f"cannot take output {output!r} of {describe_output(out)}; give an index for a tuple, a key "
            "for a dict, or a callable"
        )
    if not isinstance(got, torch.Tensor):
        raise ValueError(
            f"output {which or output!r} of the model is {describe_output(got)}, not a logits tensor; "
            f"the model returned {describe_output(out)}; choose another with output=..."
        )
    return got, which


def check_layer_names(model: nn.Module, layers: list[str]) -> dict[str, nn.Module]:
    """The model's modules by name; a ``ValueError`` naming the unknown ones (and close names) if any."""
    named = dict(model.named_modules())
    check_module_names(layers, named)
    return named


def layer_names(model: nn.Module, layers) -> list[str]:
    """``layers`` as given by a person, checked: a string is one name; names must exist; repeats are dropped."""
    if isinstance(layers, str):
        layers = [layers]
    try:
        names = list(layers)
    except TypeError:
        raise TypeError(f"layers must be a layer name or a list of names, got {type(layers).__name__}") from None
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise TypeError(f"layer names are strings, got {bad[0]!r} ({type(bad[0]).__name__})")
    if not names:
        raise ValueError("layers is empty: give at least one layer name, or layers=None to find them automatically")
    check_layer_names(model, names)
    unique = list(dict.fromkeys(names))
    if len(unique) < len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        warnings.warn(
            f"layer name(s) {repeated} given more than once; each layer is explained once", UserWarning, stacklevel=3
        )
    return unique


@contextmanager
def watch_layers(
    model: nn.Module, layers: list[str], *, spatial_only: bool = False
) -> Iterator[tuple[list[str], dict[str, tuple | None]]]:
    """Forward hooks on ``layers`` for the block (removed after): yields ``(fired, shapes)``, filled as the model
    runs: the layers that output a 4-D feature map (with ``spatial_only``, larger than 1 x 1) on their first call,
    in the order they fire, and every chosen layer's output shape on its first call (``None`` while it has not
    run)."""
    named = dict(model.named_modules())
    fired: list[str] = []
    shapes: dict[str, tuple | None] = {n: None for n in layers}
    handles = []

    def make_hook(name):
        def hook(module, inputs, output):
            if isinstance(output, (tuple, list)) and output:
                output = output[0]
            if shapes[name] is None:
                shapes[name] = tuple(output.shape) if isinstance(output, torch.Tensor) else ()
                if (
                    isinstance(output, torch.Tensor)
                    and output.dim() == 4
                    and not (spatial_only and output.shape[2] * output.shape[3] == 1)
                ):
                    fired.append(name)

        return hook

    try:
        for n in layers:
            handles.append(named[n].register_forward_hook(make_hook(n)))
        yield fired, shapes
    finally:
        for h in handles:
            h.remove()


def probe_layers(
    model: nn.Module, x: torch.Tensor, layers: list[str], *, spatial_only: bool = False
) -> tuple[list[str], dict[str, tuple], Any]:
    """One forward pass without gradients (eval mode, hooks removed after): the layers among ``layers`` that
    run and output a 4-D feature map (with ``spatial_only``, larger than 1 x 1), in the order they fire, every
    chosen layer's output shape (``None`` for layers that did not run), and the model's raw output."""
    with torch.no_grad(), eval_mode(model), watch_layers(model, layers, spatial_only=spatial_only) as (fired, shapes):
        out = model(x.to(input_dtype(model)))
    return fired, shapes, out


def resolve_layers(
    model: nn.Module, x: torch.Tensor, layers: list[str], *, auto: bool, output: Output = None
) -> tuple[list[str], torch.Tensor]:
    """The layers to explain and the logits, from one forward pass on ``x`` (1, C, H, W) without gradients.

    ``auto`` (layers found by ``find_layers``): the layers that run and give feature maps larger than 1 x 1.
    Layers a person named: all that run (a warning names those that do not); a named layer whose output is not
    4-D raises. A model that returns several outputs and no ``output`` choice: a warning says which is taken.
    """
    try:
        fired, shapes, out = probe_layers(model, x, layers, spatial_only=auto)
    except RuntimeError as e:
        raise ValueError(failure_message(model, x[0], e)) from e
    return check_layers_ran(model, x, layers, fired, shapes, out, auto=auto, output=output, stacklevel=5)


def check_layers_ran(
    model: nn.Module,
    x: torch.Tensor,
    layers: list[str],
    fired: list[str],
    shapes: dict[str, tuple | None],
    out: Any,
    *,
    auto: bool,
    output: Output = None,
    stacklevel: int = 4,
) -> tuple[list[str], torch.Tensor]:
    """:func:`resolve_layers`' rules on what a pass of the batch ``x`` gave (``fired`` and ``shapes`` from
    :func:`watch_layers`, ``out`` the model's raw output): the layers to explain and the logits, or the error
    that says what is wrong; the same warnings. For a pass made for another reason (an explanation's own)."""
    logits, which = select_output(out, output)
    if output is None and not isinstance(out, torch.Tensor):
        warnings.warn(
            f"{type(model).__name__} returned {describe_output(out)}; explaining output {which} as the "
            "logits. Pass output=... (an index, a key or a callable) to Session or inv.explain to choose "
            "another.",
            UserWarning,
            stacklevel=stacklevel,
        )
    if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
        raise ValueError(
            f"the model's output{' ' + which if which else ''} has shape {tuple(logits.shape)}; a "
            "classifier returning logits (batch, classes) is expected"
            + (
                ""
                if isinstance(out, torch.Tensor)
                else f" (it returned {describe_output(out)}: choose one with output=...)"
            )
        )
    if not auto:
        flat = [n for n in layers if shapes[n] and len(shapes[n]) != 4]
        if flat:
            raise ValueError(
                f"layer {flat[0]!r} outputs {shapes[flat[0]]}, not a 4-D feature map (N, C, H, W); "
                "choose a convolutional layer or block"
            )
        idle = [n for n in layers if shapes[n] is None]
        if idle:
            warnings.warn(
                f"layer(s) {idle} do not run in the model's forward pass (eval mode); left out",
                UserWarning,
                stacklevel=stacklevel,
            )
    if not fired:
        raise ValueError(
            "none of the chosen layers gives a feature map larger than 1 x 1 on an input of shape "
            f"{tuple(x.shape[1:])}; use larger images, or name the layers to explain with layers=[...]"
        )
    return list(fired), logits.detach()


def warn_one_layer(model: nn.Module, name: str) -> None:
    """Say so when a model's one convolution is a small part of it (a vision transformer's patch embedding)."""
    total = sum(p.numel() for p in model.parameters())
    conv = sum(p.numel() for p in model.get_submodule(name).parameters())
    if total and conv < total / 2:
        warnings.warn(
            f"{type(model).__name__} has one layer with feature maps to explain, {name!r} ({100 * conv / total:.1f} % "
            "of its parameters): the rest of the network does not output 4-D feature maps (N, C, H, W) (a vision "
            "transformer's blocks output tokens), so INV explains that one layer only",
            UserWarning,
            stacklevel=3,
        )


def failure_message(model: nn.Module, x: torch.Tensor, e: RuntimeError) -> str:
    """Why the model could not run, in words: blames the image size only when the error is about sizes."""
    text = str(e)
    low = text.lower()
    dtype = input_dtype(model)
    if any(w in low for w in ("half", "bfloat16", "dtype", "scalar type", "not implemented for")):
        return (
            f"the model ({dtype}) could not run on {x.device.type} ({text}). Convert it with model.float() to "
            "explain it in float32, or run it where its dtype is supported (e.g. device='cuda')."
        )
    sizes = ("size", "shape", "mat1 and mat2", "dimension", "kernel", "output size", "too small")
    hint = (
        " Check the image size and the transform (e.g. resize to the size the model was trained on)."
        if any(w in low for w in sizes)
        else ""
    )
    return f"the model could not run on an input of shape {tuple(x.shape)} ({text}).{hint}"
