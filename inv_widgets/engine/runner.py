"""How a model is called, in one place: where it runs, which of its outputs holds the logits, the dtype it
computes in; every pass in eval mode (each module's own flag restored after), no parameter gradient left
behind, one pass at a time.

A Session holds one :class:`ModelRunner`; the LIME/KernelSHAP baselines, TCAV (through :meth:`ModelRunner.module`,
which captum calls) and dataset runs call the model through it, so ``Session(output=...)`` and the session's lock
hold for all of them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .capture import Captured, InferenceModeError, fingerprint, run_model
from .modelio import Output, check_layers_ran, failure_message, input_dtype, resolve_layers, select_output, watch_layers
from .points import check_layer_point
from .runtime import eval_mode

__all__ = ["ModelRunner", "check_output"]


def check_output(output: Output) -> Output:
    """``output`` if it can choose among a model's outputs: None, an index, a key or a callable."""
    if isinstance(output, bool) or not (output is None or callable(output) or isinstance(output, (int, str))):
        raise TypeError(f"output must be an index, a key or a callable, got {output!r}")
    return output


class _Logits(nn.Module):
    """The runner's model as a module whose output is the logits (what captum calls). Its submodules are the
    model's, under the model's own names (``dict(module.named_modules())[layer]`` is the model's layer), so a
    library that finds a layer by name finds the one the session explains."""

    def __init__(self, runner: ModelRunner):
        super().__init__()
        object.__setattr__(self, "_net", runner.model)  # called, not registered: its children are ours
        for name, child in runner.model.named_children():
            self.add_module(name, child)
        self._output = runner.output

    def forward(self, x):
        return select_output(self._net(x.to(input_dtype(self._net))), self._output)[0]


class ModelRunner:
    """A classifier and how to call it.

    Parameters
    ----------
    model : torch.nn.Module
        Returns logits (batch, classes), or several outputs of which ``output`` chooses the logits.
    device : str or torch.device, optional
        Where it runs (default: where its parameters are); the model is moved there.
    output : int, str or callable, optional
        Which output holds the logits (see :func:`~inv_widgets.engine.modelio.select_output`).
    layer_point : str
        Where a layer's maps are read: "conv" (the convolution's output) or "activation" (after its BatchNorm
        and activation; :mod:`inv_widgets.engine.points`).
    """

    def __init__(self, model: nn.Module, device=None, output: Output = None, *, layer_point: str = "conv"):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.output = check_output(output)
        self.layer_point = check_layer_point(layer_point)
        if device is None:
            p = next(iter(model.parameters()), None)
            device = p.device if p is not None else torch.device("cpu")
        self.device = torch.device(device)
        self.model = model.to(self.device)
        #: one pass at a time: a pass puts hooks on the model and sets its mode (re-entrant: a pass may ask for
        #: the logits of its own input)
        self.lock = threading.RLock()
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        """Short id of the model's architecture and weights (part of every cluster map's identity). Maps read
        after the activation (``layer_point="activation"``) are other maps than the conv output's: their id ends in
        ``-act``, so that labels given at one point never attach to the other's maps."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.model) + ("-act" if self.layer_point == "activation" else "")
        return self._fingerprint

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype the model computes in (inputs are cast to it)."""
        return input_dtype(self.model)

    @contextmanager
    def calling(self) -> Iterator[nn.Module]:
        """The model, locked, in eval mode, without gradients: for a caller's own forward passes."""
        with self.lock, eval_mode(self.model), torch.no_grad():
            yield self.model

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The logits (B, classes), float32, of a batch ``x`` (B, C, H, W): eval mode, no gradients, locked."""
        with self.calling() as model:
            out = model(x.to(self.device, self.dtype))
        return select_output(out, self.output)[0].float()

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax of :meth:`logits`, (B, classes)."""
        return torch.softmax(self.logits(x), 1)

    def module(self) -> nn.Module:
        """The model as a module returning the logits (its ``output`` chosen): for libraries that call the model
        themselves (captum's TCAV). Call it inside :meth:`calling` or hold :attr:`lock` around it."""
        return _Logits(self)

    def resolve_layers(self, x: torch.Tensor, layers: list[str], *, auto: bool) -> tuple[list[str], torch.Tensor]:
        """The layers that run and give feature maps, and the logits, from one pass without gradients on ``x``
        (1, C, H, W) (:func:`~inv_widgets.engine.modelio.resolve_layers`)."""
        with self.lock:
            return resolve_layers(self.model, x.to(self.device), layers, auto=auto, output=self.output)

    def capture(
        self,
        x: torch.Tensor,
        layers: list[str],
        target=None,
        *,
        weighting: str | None = None,
        spatial_only: bool = False,
        keep_gradients: bool = False,
        strict: bool = True,
        score: str = "logit",
        check=None,
    ) -> Captured:
        """One forward and one backward pass of the batch ``x`` recording ``layers`` at the runner's layer point
        (:func:`~inv_widgets.engine.capture.run_model`; ``score``: what is differentiated), locked; a model that
        cannot run on ``x`` gets an error that says why in words."""
        batch = x.to(self.device)
        with self.lock:
            try:
                return run_model(
                    self.model,
                    batch,
                    layers,
                    target,
                    strict,
                    output=self.output,
                    spatial_only=spatial_only,
                    weighting=weighting,
                    keep_gradients=keep_gradients,
                    layer_point=self.layer_point,
                    score=score,
                    check=check,
                )
            except InferenceModeError:
                raise  # says what to do itself; not the model's failure
            except RuntimeError as e:
                raise ValueError(failure_message(self.model, batch[0], e)) from e

    def capture_first(
        self,
        x: torch.Tensor,
        layers: list[str],
        target=None,
        *,
        auto: bool,
        weighting: str | None = None,
        score: str = "logit",
    ) -> tuple[Captured, list[str]]:
        """:meth:`capture` of the batch ``x`` that also learns, from the same pass, which of ``layers`` run and
        give feature maps: :meth:`resolve_layers`' rules, warnings and errors without a pass of its own. Returns
        the captured pass and the layers (those it recorded, in the order they fired)."""
        batch = x.to(self.device)
        with self.lock, watch_layers(self.model, layers, spatial_only=auto) as (fired, shapes):

            def check(out):  # after the forward pass: what resolve_layers says of a pass of its own
                check_layers_ran(
                    self.model, batch, layers, fired, shapes, out, auto=auto, output=self.output, stacklevel=9
                )

            cap = self.capture(
                batch, layers, target, weighting=weighting, spatial_only=auto, strict=not auto, score=score, check=check
            )
        return cap, list(cap.order)
