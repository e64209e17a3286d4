"""Turn what a user hands us (PIL images of any mode, arrays, tensors, file paths) into model input.

Every failure names the problem and the fix.
"""
from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = ["to_pil", "to_model_input", "display_image", "tensor_id", "find_normalize"]


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
        raise ValueError(f"the {what} contains NaN or infinite values; replace them (e.g. np.nan_to_num) before explaining")


def _array_to_pil(arr: np.ndarray) -> Image.Image:
    a = np.asarray(arr)
    if a.size == 0:
        raise ValueError(f"the image is empty (shape {a.shape}); pass an image with at least one pixel")
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 4:
        raise ValueError(f"got a batch of {a.shape[0]} images (shape {a.shape}); pass one image at a time "
                         "(or use Session.explain_many)")
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
        hi = float(a.max()) if a.size else 1.0
        scale = 255.0 if hi <= 1.0 + 1e-6 else (255.0 / 65535.0 if hi > 255.0 else 1.0)
        a = np.clip(a.astype(np.float64) * scale + 0.5, 0, 255).astype(np.uint8)
    elif a.dtype != np.uint8:
        hi = np.iinfo(a.dtype).max if np.issubdtype(a.dtype, np.integer) else 255
        hi = 255 if a.max() <= 255 else (65535 if a.max() <= 65535 else hi)
        a = np.clip(a.astype(np.float64) * (255.0 / hi) + 0.5, 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[-1] == 4:
        return _flatten_alpha(Image.fromarray(a))
    return Image.fromarray(a).convert("RGB")


def _flatten_alpha(img: Image.Image) -> Image.Image:
    img = img.convert("RGBA")
    bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
    return Image.alpha_composite(bg, img).convert("RGB")


def to_pil(image: Any) -> Image.Image:
    """Any supported image (PIL of any mode, array, path) as an RGB PIL image; transparency over white."""
    if isinstance(image, (str, os.PathLike)):
        try:
            with Image.open(image) as im:
                im.load()
                image = im.copy()
        except FileNotFoundError:
            raise ValueError(f"image file {os.fspath(image)!r} does not exist") from None
        except Exception as e:  # PIL.UnidentifiedImageError and friends
            raise ValueError(f"cannot read {os.fspath(image)!r} as an image ({e})") from None
    if isinstance(image, Image.Image):
        if image.width == 0 or image.height == 0:
            raise ValueError(f"the image is empty ({image.width}x{image.height}); pass an image with at least one pixel")
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            return _array_to_pil(np.asarray(image))
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            return _flatten_alpha(image)
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        return _array_to_pil(image)
    if isinstance(image, torch.Tensor):
        return _array_to_pil(image.detach().cpu().numpy())
    raise TypeError(f"cannot use a {type(image).__name__} as an image; pass a PIL image, a numpy array, "
                    "a torch tensor or a file path")


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


def to_model_input(image: Any, transform=None) -> torch.Tensor:
    """One image as a float tensor (C, H, W) ready for the model.

    Tensors (C, H, W) or (1, C, H, W) are taken as model input as they are. Everything else goes through
    ``transform`` (default: to a [0, 1] tensor at its own size).
    """
    if isinstance(image, torch.Tensor):
        x = image.detach()
        if x.dim() == 4:
            if x.shape[0] != 1:
                raise ValueError(f"got a batch of {x.shape[0]} images (shape {tuple(x.shape)}); pass one image at a "
                                 "time (x[i]) or use Session.explain_many")
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
        return x.float()
    pil = to_pil(image)
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
        raise TypeError(f"the transform returned a {type(x).__name__}; it must return a torch tensor (C, H, W) "
                        "(add transforms.ToTensor())")
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 3:
        raise ValueError(f"the transform returned shape {tuple(x.shape)}; expected (C, H, W)")
    _check_finite(x, "transformed image")
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
