"""Colour maps, overlays, thumbnails and PNG bytes for the widgets.

Everything here is plain numpy + Pillow (no matplotlib at run time). The colour maps are 256-entry
lookup tables: ``jet`` is the piecewise-linear definition the paper's figures use (matplotlib's
``jet``); ``viridis`` and ``inferno`` are matplotlib's tables, embedded as hex; ``gray`` is the
identity ramp.

>>> from inv_widgets import render
>>> rgb = render.overlay(image, cluster_map, cmap="jet", alpha=0.5)   # the paper's 50/50 blend
>>> png = render.to_png(rgb)                                          # bytes, fast (compress_level=1)
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np
from PIL import Image

__all__ = [
    "COLORMAPS",
    "colormap",
    "apply_cmap",
    "overlay",
    "to_uint8_image",
    "resize_map",
    "thumbnail",
    "to_png",
    "sheet",
    "css_gradient",
    "colorbar_html",
]

COLORMAPS = ("jet", "viridis", "inferno", "gray")

ImageLike = np.ndarray | Image.Image

# matplotlib's "jet" segment data: (x, value) anchors per channel, linearly interpolated.
_JET_ANCHORS = {
    "r": ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
    "g": ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
    "b": ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)),
}

_VIRIDIS_HEX = (
    "44015444025645045745055946075a46085c460a5d460b5e470d60470e61471063471164471365481467481668481769"
    "48186a481a6c481b6d481c6e481d6f481f70482071482173482374482475482576482677482878482979472a7a472c7a"
    "472d7b472e7c472f7d46307e46327e46337f463480453581453781453882443983443a83443b84433d84433e85423f85"
    "4240864241864142874144874045884046883f47883f48893e49893e4a893e4c8a3d4d8a3d4e8a3c4f8a3c508b3b518b"
    "3b528b3a538b3a548c39558c39568c38588c38598c375a8c375b8d365c8d365d8d355e8d355f8d34608d34618d33628d"
    "33638d32648e32658e31668e31678e31688e30698e306a8e2f6b8e2f6c8e2e6d8e2e6e8e2e6f8e2d708e2d718e2c718e"
    "2c728e2c738e2b748e2b758e2a768e2a778e2a788e29798e297a8e297b8e287c8e287d8e277e8e277f8e27808e26818e"
    "26828e26828e25838e25848e25858e24868e24878e23888e23898e238a8d228b8d228c8d228d8d218e8d218f8d21908d"
    "21918c20928c20928c20938c1f948c1f958b1f968b1f978b1f988b1f998a1f9a8a1e9b8a1e9c891e9d891f9e891f9f88"
    "1fa0881fa1881fa1871fa28720a38620a48621a58521a68522a78522a88423a98324aa8325ab8225ac8226ad8127ad81"
    "28ae8029af7f2ab07f2cb17e2db27d2eb37c2fb47c31b57b32b67a34b67935b77937b87838b9773aba763bbb753dbc74"
    "3fbc7340bd7242be7144bf7046c06f48c16e4ac16d4cc26c4ec36b50c46a52c56954c56856c66758c7655ac8645cc863"
    "5ec96260ca6063cb5f65cb5e67cc5c69cd5b6ccd5a6ece5870cf5773d05675d05477d1537ad1517cd2507fd34e81d34d"
    "84d44b86d54989d5488bd6468ed64590d74393d74195d84098d83e9bd93c9dd93ba0da39a2da37a5db36a8db34aadc32"
    "addc30b0dd2fb2dd2db5de2bb8de29bade28bddf26c0df25c2df23c5e021c8e020cae11fcde11dd0e11cd2e21bd5e21a"
    "d8e219dae319dde318dfe318e2e418e5e419e7e419eae51aece51befe51cf1e51df4e61ef6e620f8e621fbe723fde725"
)
_INFERNO_HEX = (
    "00000401000501010601010802010a02020c02020e03021004031204031405041706041907051b08051d09061f0a0722"
    "0b07240c08260d08290e092b10092d110a30120a32140b34150b37160b39180c3c190c3e1b0c411c0c431e0c451f0c48"
    "210c4a230c4c240c4f260c51280b53290b552b0b572d0b592f0a5b310a5c320a5e340a5f3609613809623909633b0964"
    "3d09653e0966400a67420a68440a68450a69470b6a490b6a4a0c6b4c0c6b4d0d6c4f0d6c510e6c520e6d540f6d550f6d"
    "57106e59106e5a116e5c126e5d126e5f136e61136e62146e64156e65156e67166e69166e6a176e6c186e6d186e6f196e"
    "71196e721a6e741a6e751b6e771c6d781c6d7a1d6d7c1d6d7d1e6d7f1e6c801f6c82206c84206b85216b87216b88226a"
    "8a226a8c23698d23698f24699025689225689326679526679727669827669a28659b29649d29649f2a63a02a63a22b62"
    "a32c61a52c60a62d60a82e5fa92e5eab2f5ead305dae305cb0315bb1325ab3325ab43359b63458b73557b93556ba3655"
    "bc3754bd3853bf3952c03a51c13a50c33b4fc43c4ec63d4dc73e4cc83f4bca404acb4149cc4248ce4347cf4446d04545"
    "d24644d34743d44842d54a41d74b3fd84c3ed94d3dda4e3cdb503bdd513ade5238df5337e05536e15635e25734e35933"
    "e45a31e55c30e65d2fe75e2ee8602de9612bea632aeb6429eb6628ec6726ed6925ee6a24ef6c23ef6e21f06f20f1711f"
    "f1731df2741cf3761bf37819f47918f57b17f57d15f67e14f68013f78212f78410f8850ff8870ef8890cf98b0bf98c0a"
    "f98e09fa9008fa9207fa9407fb9606fb9706fb9906fb9b06fb9d07fc9f07fca108fca309fca50afca60cfca80dfcaa0f"
    "fcac11fcae12fcb014fcb216fcb418fbb61afbb81dfbba1ffbbc21fbbe23fac026fac228fac42afac62df9c72ff9c932"
    "f9cb35f8cd37f8cf3af7d13df7d340f6d543f6d746f5d949f5db4cf4dd4ff4df53f4e156f3e35af3e55df2e661f2e865"
    "f2ea69f1ec6df1ed71f1ef75f1f179f2f27df2f482f3f586f3f68af4f88ef5f992f6fa96f8fb9af9fc9dfafda1fcffa4"
)


@cache
def _lut(name: str) -> np.ndarray:
    x = np.linspace(0.0, 1.0, 256)
    if name == "jet":
        chans = []
        for c in "rgb":
            xs, ys = zip(*_JET_ANCHORS[c])
            chans.append(np.interp(x, xs, ys))
        lut = np.round(np.stack(chans, axis=1) * 255.0).astype(np.uint8)
    elif name == "viridis":
        lut = np.frombuffer(bytes.fromhex("".join(_VIRIDIS_HEX)), dtype=np.uint8).reshape(256, 3)
    elif name == "inferno":
        lut = np.frombuffer(bytes.fromhex("".join(_INFERNO_HEX)), dtype=np.uint8).reshape(256, 3)
    elif name == "gray":
        ramp = np.arange(256, dtype=np.uint8)
        lut = np.stack([ramp, ramp, ramp], axis=1)
    else:  # pragma: no cover - guarded by colormap()
        raise KeyError(name)
    lut = np.ascontiguousarray(lut)
    lut.setflags(write=False)
    return lut


def colormap(name: str = "jet") -> np.ndarray:
    """The (256, 3) uint8 lookup table of a colour map (read-only)."""
    key = str(name).lower()
    if key not in COLORMAPS:
        raise ValueError(f"unknown colour map {name!r}; expected one of {', '.join(COLORMAPS)}")
    return _lut(key)


def _as_map(m) -> np.ndarray:
    a = np.asarray(m)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"a map must be 2-D (H, W); got an array of shape {a.shape}")
    a = a.astype(np.float32, copy=False)
    if not np.all(np.isfinite(a)):
        a = np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=0.0)
    return a


def apply_cmap(m, cmap: str = "jet") -> np.ndarray:
    """Colour a 2-D map with values in [0, 1] (clipped; NaN shows as 0): uint8 (H, W, 3)."""
    a = _as_map(m)
    idx = np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return colormap(cmap)[idx]


def css_gradient(cmap: str = "jet", direction: str = "to top", stops: int = 17) -> str:
    """A colour map as a CSS ``linear-gradient`` (``stops`` evenly spaced colours from its table), from 0 to 1
    along ``direction``: the colour scale drawn beside the maps (widgets and the HTML report)."""
    lut = colormap(cmap)
    idx = np.round(np.linspace(0, 255, max(2, int(stops)))).astype(int)
    parts = [f"#{lut[i, 0]:02x}{lut[i, 1]:02x}{lut[i, 2]:02x} {100 * i / 255:.1f}%" for i in idx]
    return f"linear-gradient({direction}, {', '.join(parts)})"


#: What the colour of a cluster map means, said beside its colour scale.
COLORBAR_TITLE = "map value (min-max scaled): 1 = most salient pixel, 0 = least"


def colorbar_html(cmap: str = "jet", height: int = 128) -> str:
    """A vertical colour scale as static HTML (inline styles, no script): the gradient with 1 at the top and
    0 at the bottom, and what the values mean in its tooltip."""
    return (
        f'<div class="inv-colorbar" title="{COLORBAR_TITLE}" style="display:flex;gap:4px;align-items:stretch;'
        f'height:{int(height)}px;font-size:11px;color:#555">'
        f'<div style="width:12px;border-radius:2px;border:1px solid #0003;background:{css_gradient(cmap)}"></div>'
        '<div style="display:flex;flex-direction:column;justify-content:space-between">'
        "<span>1 high</span><span>0 low</span></div></div>"
    )


def to_uint8_image(image: ImageLike) -> np.ndarray:
    """An RGB uint8 (H, W, 3) array from a PIL image, a uint8 array, or a float array in [0, 1].

    Grey images are repeated to three channels; an alpha channel is dropped."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[2] not in (1, 3, 4):
        a = np.moveaxis(a, 0, 2)  # (C, H, W) -> (H, W, C)
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an image of shape (H, W), (H, W, 3) or (H, W, 4); got {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    a = a[:, :, :3]
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.floating):
        a = np.nan_to_num(a.astype(np.float32), nan=0.0)
        if a.size and a.max() > 1.0 + 1e-6:  # floats already on a 0..255 scale
            return np.clip(a + 0.5, 0, 255).astype(np.uint8)
        return np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.clip(a, 0, 255).astype(np.uint8)


def resize_map(m, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D float map to ``size = (H, W)``."""
    a = _as_map(m)
    h, w = int(size[0]), int(size[1])
    if a.shape == (h, w):
        return a
    return np.asarray(Image.fromarray(np.ascontiguousarray(a)).resize((w, h), Image.BILINEAR), dtype=np.float32)


def overlay(image: ImageLike, m, cmap: str = "jet", alpha: float = 0.5) -> np.ndarray:
    """Blend a coloured map over an image: ``(1 - alpha) * image + alpha * cmap(map)``, uint8 (H, W, 3).

    The map is resized (bilinear) to the image when their sizes differ. ``alpha=0.5`` with ``"jet"``
    is the paper's rendering of a cluster map."""
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
    img = to_uint8_image(image)
    heat = apply_cmap(resize_map(m, img.shape[:2]), cmap)
    out = img.astype(np.float32) * (1.0 - float(alpha)) + heat.astype(np.float32) * float(alpha)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def thumbnail(image: ImageLike, size: int = 96) -> np.ndarray:
    """A copy no larger than ``size`` pixels on its longer side (aspect kept), uint8 (h, w, 3)."""
    if int(size) < 1:
        raise ValueError(f"size must be a positive number of pixels; got {size}")
    pil = Image.fromarray(to_uint8_image(image))
    pil.thumbnail((int(size), int(size)), Image.BILINEAR)
    return np.asarray(pil)


def to_png(array: ImageLike, compress_level: int = 1) -> bytes:
    """PNG bytes of an image or map: uint8 (H, W) / (H, W, 3) / (H, W, 4), float in [0, 1], or PIL.

    ``compress_level=1`` keeps encoding fast (a few ms for 224 x 224) at a modest size cost."""
    if isinstance(array, Image.Image):
        pil = array if array.mode in ("L", "RGB", "RGBA") else array.convert("RGB")
    else:
        a = np.asarray(array)
        if a.ndim == 3 and a.shape[2] == 4 and a.dtype == np.uint8:
            pil = Image.fromarray(np.ascontiguousarray(a))
        elif a.ndim == 2:
            if a.dtype != np.uint8:
                a = np.clip(np.nan_to_num(a.astype(np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
            pil = Image.fromarray(np.ascontiguousarray(a))
        else:
            pil = Image.fromarray(to_uint8_image(a))
    buf = io.BytesIO()
    pil.save(buf, format="PNG", compress_level=int(compress_level))
    return buf.getvalue()


def sheet(images: list, captions: list[str], cols: int | None = None, size: int = 160, pad: int = 6) -> np.ndarray:
    """Pictures side by side with a caption under each (the gallery as one image), uint8 (H, W, 3), white
    background. Each picture is scaled to ``size`` pixels on its longer side (up or down); ``cols`` per row
    (default: all in one row, at most 6)."""
    from PIL import ImageDraw, ImageFont, ImageOps

    if len(images) != len(captions):
        raise ValueError(f"{len(images)} pictures but {len(captions)} captions")
    n = len(images)
    cols = max(1, int(cols) if cols else min(max(n, 1), 6))
    rows = max(1, -(-n // cols))
    font = ImageFont.load_default()
    line = 14
    cell_w, cell_h = size + pad, size + line + pad
    canvas = Image.new("RGB", (pad + cols * cell_w, pad + rows * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (img, cap) in enumerate(zip(images, captions)):
        x, y = pad + (i % cols) * cell_w, pad + (i // cols) * cell_h
        pic = ImageOps.contain(Image.fromarray(to_uint8_image(img)), (size, size), Image.BILINEAR)
        canvas.paste(pic, (x + (size - pic.width) // 2, y + (size - pic.height) // 2))
        text = str(cap)
        while len(text) > 1 and draw.textlength(text, font=font) > size:
            text = text[:-2] + "…"
        draw.text((x + (size - draw.textlength(text, font=font)) / 2, y + size + 2), text, fill=(30, 30, 30), font=font)
    return np.asarray(canvas)
