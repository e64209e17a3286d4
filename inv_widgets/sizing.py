"""Inputs sized for the model: the size a session's model expects, the pixel cap, and the memory an explanation
needs, checked before the model runs (``Session(..., input_size=..., max_pixels=..., max_memory=...)``).

A 12-megapixel photo explained at full size by the demo CNN (trained on 128 x 128 pictures) took 8 GB and a
minute, for maps that mean nothing at that scale; an 81-megapixel one was killed by the kernel. Here a picture
larger than the model's input size is resized to it (aspect kept, said once), one above the pixel cap is
refused before it is decoded, and an input whose explanation would need more memory than the process can still
allocate is refused with :class:`~inv_widgets.inputs.InputTooLargeError`, which names the option to change.
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext

import numpy as np
import torch
from PIL import Image

from .engine.modelio import input_dtype
from .engine.runtime import eval_mode
from .inputs import InputTooLargeError

__all__ = [
    "InputLimits",
    "DEFAULT_MAX_PIXELS",
    "CHECK_MEMORY_ABOVE",
    "available_memory",
    "model_size",
    "transform_size",
]


#: Pictures with more pixels than this are refused by a session (``Session(..., max_pixels=...)`` changes it):
#: decoding one takes seconds and hundreds of MB, and no model of this library explains it at that size.
DEFAULT_MAX_PIXELS = 50_000_000

#: Inputs up to this many pixels (512 x 512) are explained without a memory estimate (no probe runs).
CHECK_MEMORY_ABOVE = 512 * 512

_OVERHEAD = 64 << 20  # bytes an explanation takes whatever its size (clustering, records, Python objects)
_PROBE_PIXELS = 128 * 128  # the shape probe runs the model on the input shrunk to about this many pixels
_RESIZING_STEPS = ("Resize", "RandomResizedCrop", "CenterCrop", "RandomCrop", "FiveCrop", "TenCrop")


def _size_of(image) -> tuple[int, int] | None:
    """(height, width) of an image without decoding it; None when it cannot be told cheaply."""
    if isinstance(image, Image.Image):
        return image.height, image.width
    if isinstance(image, (np.ndarray, torch.Tensor)) and image.ndim >= 2:
        shape = tuple(image.shape)
        if len(shape) == 4:
            shape = shape[1:]
        if len(shape) == 3 and shape[0] in (1, 3, 4) and shape[-1] not in (1, 3, 4):
            return int(shape[1]), int(shape[2])
        return int(shape[0]), int(shape[1])
    return None


def _pair(size, what: str) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an int or (height, width), got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"{what} must be at least 1 x 1, got {size!r}")
    return h, w


def transform_size(transform) -> tuple[int, int] | None:
    """The (height, width) a transform resizes or crops pictures to, when it does (torchvision's ``Resize``,
    crops, and the weights' presets such as ``VGG16_Weights.DEFAULT.transforms()``); None otherwise."""
    if transform is None:
        return None
    crop = getattr(transform, "crop_size", None)
    if crop is not None:  # torchvision's presets: resize_size, then crop_size
        return _pair(crop[0] if isinstance(crop, (list, tuple)) and len(crop) == 1 else crop, "crop_size")
    if type(transform).__name__ in _RESIZING_STEPS:
        size = getattr(transform, "size", None)
        if size is None:
            size = getattr(transform, "max_size", None)
        if size is not None:
            return _pair(size[0] if isinstance(size, (list, tuple)) and len(size) == 1 else size, "size")
    found = None
    for t in getattr(transform, "transforms", []) or []:
        found = transform_size(t) or found  # the last resizing step decides
    return found


def model_size(model) -> tuple[int, int] | None:
    """The (height, width) a model says it takes: its ``input_size`` attribute (the demo CNN: 128 x 128), or
    timm's ``pretrained_cfg["input_size"]`` (C, H, W)."""
    size = getattr(model, "input_size", None)
    if size is None:
        cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
        size = cfg.get("input_size") if isinstance(cfg, dict) else None
    if size is None:
        return None
    size = tuple(size) if isinstance(size, (list, tuple)) else size
    if isinstance(size, tuple) and len(size) == 3:
        size = size[1:]
    return _pair(size, "the model's input_size")


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n < 1e10 else f"{n / 1e9:.0f} GB"


def available_memory(device=None) -> int | None:
    """Bytes this process can still allocate on ``device``: for a CUDA device its free memory; on the CPU the
    least of the system's available memory, the room left under this process's cgroup limit (a container, a
    JupyterHub pod) and under its address-space limit (``RLIMIT_AS``). None when it cannot be told."""
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except Exception:  # noqa: BLE001 - no answer: no check
            return None
    if device.type != "cpu":
        return None
    room = []
    meminfo = _read("/proc/meminfo")
    if meminfo:
        for line in meminfo.splitlines():
            if line.startswith("MemAvailable:"):
                room.append(int(line.split()[1]) * 1024)
    else:
        try:
            import psutil

            room.append(int(psutil.virtual_memory().available))
        except Exception:  # noqa: BLE001 - psutil missing: the limits below, if any
            pass
    room.extend(_cgroup_room())
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            status = _read("/proc/self/status")
            used = next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmSize:")), 0)
            room.append(max(0, soft - used))
    except (ImportError, ValueError, OSError):
        pass
    return min(room) if room else None


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def _cgroup_room() -> list[int]:
    """Room left under this process's cgroup memory limit (v2, else v1); empty when there is none."""
    for line in _read("/proc/self/cgroup").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[0] == "0":  # cgroup v2
            base = "/sys/fs/cgroup" + parts[2].strip()
            limit, used = _read(base + "/memory.max").strip(), _read(base + "/memory.current").strip()
            if limit.isdigit() and used.isdigit():
                return [max(0, int(limit) - int(used))]
        if len(parts) == 3 and "memory" in parts[1].split(","):  # cgroup v1
            base = "/sys/fs/cgroup/memory" + parts[2].strip()
            limit = _read(base + "/memory.limit_in_bytes").strip()
            used = _read(base + "/memory.usage_in_bytes").strip()
            if limit.isdigit() and used.isdigit() and int(limit) < 1 << 60:
                return [max(0, int(limit) - int(used))]
    return []


class InputLimits:
    """What a session does with pictures of every size: the size its model expects, the pixel cap, and the
    memory an explanation needs, checked before the model runs.

    Parameters
    ----------
    model : torch.nn.Module
        The session's model: it may say its input size (an ``input_size`` attribute, as the demo CNN does), and
        it is run once on a small copy of a large input to learn its feature maps' sizes (the shape probe).
    transform : callable, optional
        The session's transform. One that resizes pictures itself (torchvision's ``Resize`` or a weights'
        ``transforms()``) gets them as they come.
    layers : list of str
        The layers the session explains (their activations and gradients are kept).
    input_size : "auto", None, int or (height, width)
        The input size of the model. "auto" (default): the model's own (``model.input_size``, timm's
        ``pretrained_cfg``), unless the transform resizes pictures itself. A picture larger than it is resized to
        cover it, keeping its aspect (its shorter side to 128 for the demo's 128 x 128), with a warning once.
        None: pictures are explained at the size they come. Model input (tensors, channels-first float arrays)
        is never resized.
    max_pixels : int or None
        Pictures with more pixels are refused before they are decoded (default 50 megapixels); None: no cap.
    max_memory : "auto", None or float
        Bytes an explanation may take. "auto" (default): what this process can still allocate (see
        :func:`available_memory`); a number: that many bytes; None: not checked. An input above 512 x 512
        pixels whose explanation (activations and gradients, estimated per megapixel from the shape probe)
        would need more is refused with an :class:`InputTooLargeError` instead of running out of memory.
    device : torch.device, optional
        Where the model runs (a CUDA device's free memory is its budget).
    lock : lock, optional
        Held while the shape probe runs the model (the session's: one pass at a time).
    """

    def __init__(
        self,
        model,
        transform=None,
        layers=(),
        *,
        input_size="auto",
        max_pixels=DEFAULT_MAX_PIXELS,
        max_memory="auto",
        device=None,
        lock=None,
    ):
        if max_pixels is not None and (
            isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, float, np.number)) or not max_pixels >= 1
        ):
            raise ValueError(
                f"max_pixels must be a number of pixels of at least 1, or None for no cap; got {max_pixels!r}"
            )
        if not (
            max_memory in ("auto", None)
            or (isinstance(max_memory, (int, float, np.number)) and not isinstance(max_memory, bool) and max_memory > 0)
        ):
            raise ValueError(
                f"max_memory must be a number of bytes, 'auto' (what this process can allocate) or "
                f"None (no check); got {max_memory!r}"
            )
        self.options = dict(input_size=input_size, max_pixels=max_pixels, max_memory=max_memory)
        self.model = model
        self.layers = list(layers)
        self.max_pixels = None if max_pixels is None else int(max_pixels)
        self.max_memory = max_memory
        self.device = torch.device(device) if device is not None else None
        self.lock = lock
        self.resizes_itself = False
        if isinstance(input_size, str) and input_size == "auto":
            self.size = model_size(model)
            if transform_size(transform) is not None:
                self.size, self.resizes_itself = None, True
        elif input_size is None:
            self.size = None
        else:
            self.size = _pair(input_size, "input_size")
        self._per_pixel: dict[int, tuple[float, float] | None] = {}  # channels -> (all bytes, layer bytes) / px
        self._warned = False

    def __repr__(self):
        return (
            f"InputLimits(size={self.size}, max_pixels={self.max_pixels}, max_memory={self.max_memory!r}"
            + (", the transform resizes" if self.resizes_itself else "")
            + ")"
        )

    # ---- pixels ------------------------------------------------------------------------------------------
    def check_pixels(self, image, name: str | None = None) -> None:
        """Refuse a picture (PIL image, array, tensor; a file once opened) with more pixels than the cap."""
        if self.max_pixels is None:
            return
        hw = _size_of(image)
        if hw is None or hw[0] * hw[1] <= self.max_pixels:
            return
        what = f"{name} is" if name else "the picture is"
        raise InputTooLargeError(
            f"{what} {hw[1]}x{hw[0]} ({hw[0] * hw[1] / 1e6:.1f} megapixels), above the limit of "
            f"{self.max_pixels / 1e6:g} megapixels; resize it first, or raise the limit with "
            "Session(..., max_pixels=...) (inv-widgets explain --max-pixels)"
        )

    def fit(self, image):
        """A picture larger than the model's input size, resized to cover it with its aspect kept (bilinear,
        antialiased); said in a warning the first time. Anything else is returned as it is. A picture above the
        pixel cap is refused first."""
        self.check_pixels(image)
        if self.size is None or not isinstance(image, Image.Image):
            return image
        h, w = self.size
        scale = max(h / image.height, w / image.width)
        if scale >= 1.0:
            return image
        new = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"the {image.width}x{image.height} picture is resized to {new[0]}x{new[1]} for a model that takes "
                f"{w}x{h} (its aspect kept; said once per session); pass Session(..., input_size=None) to explain "
                "pictures at the size they come",
                UserWarning,
                stacklevel=5,
            )
        return image.convert("RGB").resize(new, Image.BILINEAR, reducing_gap=3.0)

    # ---- memory ------------------------------------------------------------------------------------------
    def estimate(self, x: torch.Tensor) -> int | None:
        """Bytes an explanation of model input ``x`` (C, H, W) needs, estimated from the shape probe: every
        module's output (what autograd keeps), the explained layers' activations and gradients (float32), the
        maps at input resolution, per pixel (measured: 1.05 to 1.31 times the peak it adds for the demo CNN at 0.5
        to 2 megapixels, benchmarks/bench_inputs.py); None when the probe could not run the model."""
        c, h, w = x.shape[-3:]
        if int(c) not in self._per_pixel:
            self._per_pixel[int(c)] = self._probe(x)
        per = self._per_pixel[int(c)]
        if per is None:
            return None
        every, layers = per
        px = int(h) * int(w)
        maps = 4 * 2 * max(1, len(self.layers)) + 32  # float32 maps at input size per layer, input and display
        return int(px * (every + 2 * layers + maps)) + _OVERHEAD

    def _probe(self, x: torch.Tensor) -> tuple[float, float] | None:
        """Run the model once without gradients on ``x`` shrunk to about 128 x 128 pixels (aspect kept), and
        return (bytes of every module's output, float32 bytes of the explained layers' outputs) per input pixel."""
        model = self.model
        h, w = int(x.shape[-2]), int(x.shape[-1])
        s = min(1.0, (_PROBE_PIXELS / (h * w)) ** 0.5)
        size = (min(h, max(32, round(h * s))), min(w, max(32, round(w * s))))
        param = next(iter(model.parameters()), None)
        device = self.device or (param.device if param is not None else torch.device("cpu"))
        small = torch.nn.functional.interpolate(
            x.detach()[None].float(), size=size, mode="bilinear", align_corners=False
        ).to(device, input_dtype(model))
        names = set(self.layers)
        seen: set[int] = set()
        kept: list = []  # every output stays alive until the probe ends, as autograd keeps them: a freed output's
        # memory reused by a later one would share its address and be counted once (the estimate then varied)
        total = {"every": 0, "layers": 0}

        def record(module_name):
            def hook(_module, _inputs, out):
                for t in _tensors(out):
                    kept.append(t)
                    if module_name in names:
                        total["layers"] += t.numel() * 4
                    ptr = t.untyped_storage().data_ptr()
                    if ptr not in seen:  # in-place outputs (ReLU(inplace=True)) share their input's memory
                        seen.add(ptr)
                        total["every"] += t.numel() * t.element_size()

            return hook

        with self.lock or nullcontext():  # no other pass meets these hooks
            handles = [
                m.register_forward_hook(record(n))
                for n, m in model.named_modules()
                if n in names or not any(True for _ in m.children())
            ]
            try:
                with torch.no_grad(), eval_mode(model):
                    model(small)
            except Exception:  # noqa: BLE001 - a model that only takes its own size: no estimate
                return None
            finally:
                for hd in handles:
                    hd.remove()
                kept.clear()
        px = size[0] * size[1]
        return total["every"] / px, total["layers"] / px

    def check_memory(self, x: torch.Tensor) -> None:
        """Refuse model input ``x`` whose explanation needs more memory than the budget (inputs above 512 x 512
        pixels; smaller ones are not probed)."""
        if self.max_memory is None or x.shape[-2] * x.shape[-1] <= CHECK_MEMORY_ABOVE:
            return
        need = self.estimate(x)
        if need is None:
            return
        auto = self.max_memory == "auto"
        budget = available_memory(self.device) if auto else float(self.max_memory)
        if budget is None or need <= budget:
            return
        h, w = int(x.shape[-2]), int(x.shape[-1])
        have = f"the {_gb(budget)} " + ("this process can still allocate" if auto else "allowed by max_memory")
        raise InputTooLargeError(
            f"explaining this {w}x{h} input needs about {_gb(need)} of memory ({_gb(need / (h * w) * 1e6)} per "
            f"megapixel for this model), more than {have}; explain it smaller (resize it, or "
            "Session(..., input_size=...)), or set Session(..., max_memory=...) to the bytes you know it may use"
        )


def _tensors(out):
    if isinstance(out, torch.Tensor):
        yield out
    elif isinstance(out, (tuple, list)):
        for o in out:
            yield from _tensors(o)
    elif isinstance(out, dict):
        for o in out.values():
            yield from _tensors(o)
