"""Turn what a user hands us (PIL images of any mode, arrays, tensors, file paths) into model input.

Every failure names the problem and the fix.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = [
    "to_pil",
    "to_model_input",
    "display_image",
    "tensor_id",
    "find_normalize",
    "blurred",
    "is_dataset",
    "ImageSet",
    "InputTooLargeError",
]


def _check_finite(arr, what="image"):
    if isinstance(arr, torch.Tensor):
        if not arr.is_floating_point():
            return
        if arr.device.type == "cpu" and arr.dtype != torch.bfloat16:  # numpy: no intra-op threads for a small check
            arr = arr.detach().numpy()
            ok = bool(np.isfinite(arr).all())
        else:
            ok = bool(torch.isfinite(arr).all())
    else:
        ok = bool(np.isfinite(arr).all()) if np.issubdtype(arr.dtype, np.floating) else True
    if not ok:
        raise ValueError(
            f"the {what} contains NaN or infinite values; replace them (e.g. np.nan_to_num) before explaining"
        )


def _array_to_pil(arr: np.ndarray) -> Image.Image:
    a = np.asarray(arr)
    if a.size == 0:
        raise ValueError(f"the image is empty (shape {a.shape}); pass an image with at least one pixel")
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 4:
        raise ValueError(
            f"got a batch of {a.shape[0]} images (shape {a.shape}); pass one image at a time "
            "(or use Session.explain_many)"
        )
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # CHW -> HWC
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ValueError(f"cannot read an image of shape {a.shape}; expected (H, W), (H, W, 3|4) or (3, H, W)")
    _check_finite(a)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        lo, hi = float(a.min()), float(a.max())
        if lo < -1e-6:
            raise ValueError(
                f"a float image must hold intensities in [0, 1] or [0, 255], but this one goes down to {lo:.3g}. "
                "If it is already normalised model input, pass it channels-first (C, H, W) or as a torch tensor: "
                "it is then used as it is, without the transform"
            )
        if hi <= 1.0 + 1e-6:
            scale = 255.0
        elif hi <= 255.0 + 1e-6:
            scale = 1.0
        else:
            scale = 255.0 / _bit_depth_max(hi, "float")
        a = np.clip(a.astype(np.float64) * scale + 0.5, 0, 255).astype(np.uint8)
    elif a.dtype != np.uint8:
        lo, hi = int(a.min()), int(a.max())
        if lo < 0:
            raise ValueError(
                f"an integer image must hold non-negative intensities, but this one goes down to {lo}; "
                "shift or rescale it to [0, 255] first"
            )
        top = 255 if hi <= 255 else _bit_depth_max(hi, str(a.dtype))
        a = np.clip(a.astype(np.float64) * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[-1] == 4:
        return _flatten_alpha(Image.fromarray(a))
    return Image.fromarray(a).convert("RGB")


def _bit_depth_max(hi: float, kind: str) -> int:
    """The full scale of an image whose largest value is ``hi``: the smallest bit depth that holds it.

    Scientific and medical cameras store 10-, 12- or 14-bit values in 16-bit files: scaling such an image by
    1/65535 would make it nearly black. The scale is chosen by the image's own range and said in a warning.
    """
    bits = max(9, int(np.ceil(np.log2(float(hi) + 1.0))))
    top = 2**bits - 1
    if bits != 16:
        warnings.warn(
            f"the {kind} image's largest value is {hi:g}: read as {bits}-bit data and scaled by 255/{top} to 8 bits "
            "(convert it to 8 bits yourself to choose another scale)",
            UserWarning,
            stacklevel=4,
        )
    return top


def _flatten_alpha(img: Image.Image) -> Image.Image:
    img = img.convert("RGBA")
    bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
    return Image.alpha_composite(bg, img).convert("RGB")


def to_pil(image: Any, limits=None) -> Image.Image:
    """Any supported image (PIL of any mode, array, path) as an RGB PIL image; transparency over white.

    With ``limits``, a picture above its pixel cap is refused before it is decoded (a file) or converted."""
    if limits is not None:
        limits.check_pixels(image)
    if isinstance(image, (str, os.PathLike)):
        try:
            with Image.open(image) as im:
                if limits is not None:
                    limits.check_pixels(im, name=os.fspath(image))  # from the header, before decoding
                im.load()
                image = im.copy()
        except FileNotFoundError:
            raise ValueError(f"image file {os.fspath(image)!r} does not exist") from None
        except InputTooLargeError:
            raise
        except Exception as e:  # PIL.UnidentifiedImageError and friends
            raise ValueError(f"cannot read {os.fspath(image)!r} as an image ({e})") from None
    if isinstance(image, Image.Image):
        if image.width == 0 or image.height == 0:
            raise ValueError(
                f"the image is empty ({image.width}x{image.height}); pass an image with at least one pixel"
            )
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            return _array_to_pil(np.asarray(image))
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            return _flatten_alpha(image)
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        return _array_to_pil(image)
    if isinstance(image, torch.Tensor):
        return _array_to_pil(image.detach().cpu().numpy())
    raise TypeError(
        f"cannot use a {type(image).__name__} as an image; pass a PIL image, a numpy array, "
        "a torch tensor or a file path"
    )


def find_normalize(transform) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, std) of the Normalize step in a transform, if one can be found."""
    if transform is None:
        return None
    mean, std = getattr(transform, "mean", None), getattr(transform, "std", None)
    if mean is not None and std is not None:
        return np.asarray(mean, np.float32).reshape(-1), np.asarray(std, np.float32).reshape(-1)
    for t in getattr(transform, "transforms", []) or []:
        found = find_normalize(t)
        if found is not None:
            return found
    return None


def _is_model_input_array(image: Any) -> bool:
    """A float numpy array laid out channels-first, (C, H, W) or (1, C, H, W): model input, like a tensor."""
    if not isinstance(image, np.ndarray) or not np.issubdtype(image.dtype, np.floating):
        return False
    shape = image.shape[1:] if image.ndim == 4 and image.shape[0] == 1 else image.shape
    return len(shape) == 3 and shape[0] in (1, 3, 4) and shape[-1] not in (1, 3, 4)


def to_model_input(image: Any, transform=None, limits=None) -> torch.Tensor:
    """One image as a float tensor (C, H, W) ready for the model.

    Tensors and float numpy arrays laid out channels-first, (C, H, W) or (1, C, H, W), are model input: they
    are used as they are, without the transform (``data[0][0]`` and ``data[0][0].numpy()`` explain alike).
    Everything else (PIL images, file paths, (H, W) and (H, W, C) arrays, integer arrays) is an image as a
    person sees it and goes through ``transform`` (default: to a [0, 1] tensor at its own size). A float
    (H, W, C) array with negative values is refused: it looks like normalised input laid out as an image.

    ``limits`` (a session's :class:`InputLimits`): a picture above its pixel cap is refused before it is
    decoded, one larger than the model's input size is resized to it (keeping its aspect; model input is never
    resized), and the memory its explanation needs is checked before the model runs.
    """
    if _is_model_input_array(image):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if isinstance(image, torch.Tensor):
        x = image.detach()
        if x.dim() == 4:
            if x.shape[0] != 1:
                raise ValueError(
                    f"got a batch of {x.shape[0]} images (shape {tuple(x.shape)}); pass one image at a "
                    "time (x[i]) or use Session.explain_many"
                )
            x = x[0]
        if x.dim() == 2:
            x = x[None]
        if x.dim() != 3:
            raise ValueError(f"a tensor image must be (C, H, W) or (1, C, H, W), got shape {tuple(image.shape)}")
        if x.numel() == 0:
            raise ValueError(f"the image tensor is empty (shape {tuple(x.shape)})")
        if not x.is_floating_point():
            x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        _check_finite(x)
        if limits is not None:
            limits.check_pixels(x)
            limits.check_memory(x)
        return x.float()
    pil = to_pil(image, limits)
    if limits is not None:
        pil = limits.fit(pil)
    if transform is None:
        a = np.asarray(pil, dtype=np.float32) / 255.0
        return torch.from_numpy(a).permute(2, 0, 1).contiguous()
    try:
        x = transform(pil)
    except Exception as e:
        raise ValueError(
            f"the transform could not take this {pil.width}x{pil.height} {pil.mode} image "
            f"({type(e).__name__}: {e}); check that the transform accepts a PIL RGB image and returns a tensor"
        ) from e
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"the transform returned a {type(x).__name__}; it must return a torch tensor (C, H, W) "
            "(add transforms.ToTensor())"
        )
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 3:
        raise ValueError(f"the transform returned shape {tuple(x.shape)}; expected (C, H, W)")
    _check_finite(x, "transformed image")
    if limits is not None:
        limits.check_memory(x)
    return x.float()


def display_image(x: torch.Tensor, transform=None) -> np.ndarray:
    """What a person sees of model input ``x`` (C, H, W): normalisation undone, uint8 (H, W, 3)."""
    a = x.detach().float().cpu()
    norm = find_normalize(transform)
    if norm is not None and a.shape[0] in (1, 3):
        mean, std = (torch.as_tensor(v).reshape(-1, 1, 1) for v in norm)
        if mean.shape[0] in (1, a.shape[0]) and std.shape[0] in (1, a.shape[0]):
            a = a * std + mean
    lo, hi = float(a.min()), float(a.max())
    if lo < -0.05 or hi > 1.05:  # not a [0, 1] image: stretch to show it at all
        a = (a - lo) / (hi - lo) if hi > lo else torch.zeros_like(a)
    a = a.clamp(0, 1)
    if a.shape[0] == 1:
        a = a.expand(3, -1, -1)
    elif a.shape[0] != 3:
        a = a[:3] if a.shape[0] > 3 else a.mean(0, keepdim=True).expand(3, -1, -1)
    return (a.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def tensor_id(x: torch.Tensor) -> str:
    """A short content hash of a model input, used as the image's identity."""
    t = x.detach().to("cpu", torch.float32).contiguous()
    h = hashlib.sha1(str(tuple(t.shape)).encode())
    h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def is_dataset(data) -> bool:
    """A dataset (indexable, sized, not itself an image or a list of images)."""
    return (
        not isinstance(data, (list, tuple, np.ndarray, torch.Tensor, Image.Image, str))
        and hasattr(data, "__getitem__")
        and hasattr(data, "__len__")
    )


def blurred(x: torch.Tensor) -> torch.Tensor:
    """Model input (C, H, W) with its content removed by a Gaussian blur (sigma: 1/16 of the longer side): what
    deletion and insertion curves put in place of deleted pixels when the data has no background of its own."""
    from scipy.ndimage import gaussian_filter

    sigma = max(x.shape[-2:]) / 16.0
    a = x.detach().float().cpu().numpy()
    return torch.from_numpy(gaussian_filter(a, sigma=(0, sigma, sigma), mode="nearest")).to(x.dtype)


class InputTooLargeError(ValueError):
    """A picture above a session's pixel cap, or one whose explanation needs more memory than there is
    (``inv_widgets.sizing.InputLimits``)."""


class ImageSet:
    """The images a session explains: a dataset followed by images added one by one.

    The dataset's items are ``(tensor, label)`` (or a tensor); it may offer ``.image(i)`` (what a person sees),
    ``.classes``, ``.transform`` and ``.background(i)`` (the image without its object). Added images are PIL
    images, arrays, file paths or tensors. This is the one place that tells a dataset image from an added one;
    every image becomes model input through ``transform`` (default: the dataset's, else a [0, 1] tensor), and
    the last ``cache_size`` inputs are kept.
    """

    def __init__(self, data: Any = None, transform=None, *, cache_size: int = 32, limits=None):
        from .engine.runtime import LRU

        #: how pictures are sized for the model (``inv_widgets.sizing.InputLimits``, set by the session)
        self.limits = limits
        self.dataset = data if is_dataset(data) else None
        self.transform = transform if transform is not None else getattr(self.dataset, "transform", None)
        extra = [] if data is None or self.dataset is not None else data
        if isinstance(extra, (Image.Image, str, np.ndarray, torch.Tensor)):
            extra = [extra]
        self._extra: list[Any] = list(extra)
        self._inputs = LRU(cache_size)
        self._ids: dict[str, int] = {}  # image id -> index, filled as ids are computed (an index, not a cache)
        self._ids_seen: set[int] = set()

    @property
    def n_dataset(self) -> int:
        return len(self.dataset) if self.dataset is not None else 0

    def __len__(self) -> int:
        return self.n_dataset + len(self._extra)

    @property
    def classes(self) -> list[str] | None:
        """The dataset's class names, if it has them."""
        names = getattr(self.dataset, "classes", None)
        return [str(c) for c in names] if names is not None else None

    def check(self, i) -> int:
        """An image index (negative counts from the end), in 0..len-1."""
        from .engine.request import check_index

        return check_index(i, len(self), what="image", owner="the session")

    def _entry(self, i: int) -> tuple[bool, Any]:
        """``(True, dataset item)`` or ``(False, the added image)`` of a checked index: the one branch."""
        nd = self.n_dataset
        return (True, self.dataset[i]) if i < nd else (False, self._extra[i - nd])

    def add(self, image: Any) -> int:
        """Add an image (PIL, array, path or tensor), checked now; returns its index. A picture is kept at the
        size it is explained (``limits``)."""
        if self.limits is not None:
            image = self.limits.fit(image)
        x = to_model_input(image, self.transform, self.limits)
        self._extra.append(image)
        i = len(self) - 1
        self._inputs.put(i, x)
        return i

    def input(self, i) -> torch.Tensor:
        """Model input (C, H, W) of image ``i`` (kept for the next ``cache_size`` images)."""
        i = self.check(i)
        return self._inputs.get(i, lambda: self._make_input(i))

    def _make_input(self, i: int) -> torch.Tensor:
        in_dataset, entry = self._entry(i)
        if in_dataset and isinstance(entry, (tuple, list)):
            entry = entry[0]
        return to_model_input(entry, self.transform, self.limits)

    def _picture(self, i: int, x: torch.Tensor) -> Image.Image:
        size = (x.shape[2], x.shape[1])
        if i < self.n_dataset and hasattr(self.dataset, "image"):
            img = to_pil(self.dataset.image(i))
            return img if img.size == size else img.resize(size, Image.BILINEAR)
        return Image.fromarray(display_image(x, self.transform))

    def picture(self, i) -> Image.Image:
        """What a person sees of image ``i``, at model-input size (PIL RGB)."""
        i = self.check(i)
        return self._picture(i, self.input(i))

    def item(self, i) -> tuple[torch.Tensor, np.ndarray, int | None]:
        """``(model input, what a person sees as uint8 (H, W, 3), ground-truth label or None)`` of image ``i``,
        read once and not cached (a pass over a whole dataset would only grow the cache)."""
        i = self.check(i)
        x = self._inputs.get(i)
        label = None
        if x is None:
            in_dataset, entry = self._entry(i)
            if in_dataset and isinstance(entry, (tuple, list)):
                label = int(entry[1]) if len(entry) > 1 else None
                entry = entry[0]
            x = to_model_input(entry, self.transform, self.limits)
        else:
            label = self.label(i)
        return x, np.asarray(self._picture(i, x)), label

    def label(self, i) -> int | None:
        """Ground-truth class of a dataset image, if the dataset gives one."""
        i = self.check(i)
        in_dataset, entry = self._entry(i) if i < self.n_dataset else (False, None)
        if in_dataset and isinstance(entry, (tuple, list)) and len(entry) > 1:
            return int(entry[1])
        return None

    def image_id(self, i) -> str:
        """The content hash of image ``i``'s model input (``MapKey.image_id``)."""
        i = self.check(i)
        iid = tensor_id(self.input(i))
        self._ids.setdefault(iid, i)
        return iid

    def index_of(self, image_id: str) -> int:
        """The index of the image whose id is ``image_id``; ``KeyError`` if none (every image is hashed once)."""
        image_id = str(image_id)
        hit = self._ids.get(image_id)
        if hit is not None:
            return hit
        for i in range(len(self)):
            if i in self._ids_seen:
                continue
            iid = self.image_id(i)
            self._ids_seen.add(i)
            if iid == image_id:
                return i
        raise KeyError(
            f"no image of this session has id {image_id!r} (it belongs to other images, or the transform changed)"
        )

    def resolve(self, image) -> tuple[torch.Tensor, str, int]:
        """``(model input, image id, index)`` of an index or a picture (PIL image, array, path or tensor; its
        index is -1 unless its id was seen among the session's images)."""
        if isinstance(image, (int, np.integer)) and not isinstance(image, (bool, np.bool_)):
            i = self.check(image)
            x = self.input(i)
            iid = tensor_id(x)
            self._ids.setdefault(iid, i)
            return x, iid, i
        x = to_model_input(image, self.transform, self.limits)
        iid = tensor_id(x)
        return x, iid, self._ids.get(iid, -1)

    def shown(self, index: int, x: torch.Tensor) -> np.ndarray:
        """What a person sees of a resolved image (its index, or -1 for a picture), uint8 (H, W, 3)."""
        return np.asarray(self._picture(index, x)) if index >= 0 else display_image(x, self.transform)

    def fill(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """The image without its content, as model input: the dataset's ``background(i)`` when it has one (and the
        image is from the dataset), else a Gaussian blur of ``x``."""
        if 0 <= index < self.n_dataset and hasattr(self.dataset, "background"):
            bg = to_model_input(self.dataset.background(index), self.transform)
            if bg.shape == x.shape:
                return bg
        return blurred(x)

    def clear(self) -> None:
        """Drop the kept model inputs (the index of ids stays: about 100 bytes per image)."""
        self._inputs.clear()
