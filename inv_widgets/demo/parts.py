"""The parts dataset: a small procedural world where the right answer is known.

Every image shows one object (a car, a house, a clock, ...) made of a few named parts, drawn on a
textured, cluttered background with distractor shapes and, now and then, an occluder in front. The
same primitive shapes (circles, triangles, rectangles, bars) recur in many classes and among the
distractors, so a class is told by the *configuration*, colour and texture of its parts, not by any
single shape. Because we draw the parts ourselves we also know, pixel by pixel, where each visible
part is: ``part_masks(i)`` is the ground truth that explanations can be checked against.

Image ``i`` of a dataset with seed ``s`` is drawn from ``numpy.random.default_rng([s, i])`` alone, so
it is the same on every machine and in every process, and nothing is stored on disk.

Seeds used by the shipped demo model (kept here, in one place):

- ``TRAIN_SEED``: images the model was trained on (``python -m inv_widgets.demo.train``).
- ``VAL_SEED``: images watched during training (progress only, never used to fit).
- ``EVAL_SEED``: held-out images, never seen in training; ``inv_widgets.demo.load()`` and
  ``python -m inv_widgets.demo.accuracy`` use these. The evaluations' **dev** split: the defaults (recipe, cut
  rule, simulated players, layer point, map type) were chosen on them.
- ``TEST_SEED``: the evaluations' sealed **test** split (``python -m inv_widgets.eval ... --split test``), used
  only to report figures, never to choose anything.

Different seeds give independent random streams, so the three sets are disjoint.
"""

from __future__ import annotations

import colorsys
import math
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

if TYPE_CHECKING:  # the module imports without torch; the annotation names it
    import torch

__all__ = [
    "PartsDataset",
    "CLASSES",
    "CLASS_PARTS",
    "PART_VOCABULARY",
    "CLASS_PART_VOCABULARY",
    "MEAN",
    "STD",
    "TRAIN_SEED",
    "VAL_SEED",
    "EVAL_SEED",
    "TEST_SEED",
]

TRAIN_SEED = 1
VAL_SEED = 2
EVAL_SEED = 3
TEST_SEED = 4

# Parts of each class, in drawing order (back to front). Part names recur across classes where the
# concept is the same ("windows" of a car and of a house, the "roof" of a house and of a lighthouse).
CLASS_PARTS: dict[str, list[str]] = {
    "car": ["body", "windows", "wheels"],
    "house": ["walls", "roof", "door", "windows"],
    "clock": ["rim", "face", "hands"],
    "tree": ["trunk", "crown"],
    "rocket": ["flame", "fins", "hull", "nose"],
    "snowman": ["arms", "body", "nose", "hat"],
    "flower": ["stem", "petals", "center"],
    "boat": ["mast", "sail", "hull"],
    "mushroom": ["stem", "cap", "spots"],
    "lighthouse": ["tower", "lantern", "roof"],
}
CLASSES: list[str] = list(CLASS_PARTS)

# What a person might type for a part, valid for every class that has the part.
PART_VOCABULARY: dict[str, list[str]] = {
    "body": ["body", "main body", "the body", "big round shape"],
    "windows": ["window", "windows", "glass", "window panes", "light blue squares"],
    "wheels": ["wheel", "wheels", "tyres", "tires", "round black tires"],
    "walls": ["wall", "walls", "bricks", "brick wall", "facade"],
    "roof": ["roof", "rooftop", "pointed roof", "triangle on top"],
    "door": ["door", "front door", "doorway", "entrance"],
    "rim": ["rim", "frame", "clock frame", "outer ring", "round border"],
    "face": ["face", "clock face", "dial", "numbers", "white circle"],
    "hands": ["hands", "clock hands", "arrows", "pointers", "needles"],
    "trunk": ["trunk", "tree trunk", "bark", "brown trunk", "wood"],
    "crown": ["crown", "leaves", "foliage", "tree top", "green leaves"],
    "flame": ["flame", "fire", "exhaust", "engine fire", "flames"],
    "fins": ["fins", "fin", "wings", "tail fins", "side fins"],
    "hull": ["hull", "body", "hull body", "main body", "lower body"],
    "nose": ["nose", "pointy tip", "tip", "cone", "orange triangle"],
    "arms": ["arms", "stick arms", "twigs", "branches", "sticks"],
    "hat": ["hat", "top hat", "black hat", "cap on head", "headwear"],
    "stem": ["stem", "stalk", "stick", "green stem", "shaft"],
    "petals": ["petals", "petal", "flower petals", "blossom", "colored petals"],
    "center": ["center", "middle", "flower center", "yellow middle", "pollen"],
    "sail": ["sail", "sails", "white triangle", "canvas", "sailcloth"],
    "mast": ["mast", "pole", "post", "vertical pole", "stick"],
    "cap": ["cap", "mushroom cap", "red cap", "dome", "top"],
    "spots": ["spots", "dots", "white dots", "white spots", "polka dots"],
    "tower": ["tower", "stripes", "striped tower", "red and white stripes", "column"],
    "lantern": ["lantern", "light", "lamp", "beacon", "glowing top"],
}

# Extra, class-specific phrases (added to the shared ones by CLASS_PART_VOCABULARY).
_CLASS_SPECIFIC_PHRASES: dict[tuple[str, str], list[str]] = {
    ("car", "body"): ["car body", "red metal", "bonnet", "car door"],
    ("car", "windows"): ["car windows", "windshield", "windscreen"],
    ("house", "windows"): ["house windows", "square window"],
    ("house", "roof"): ["red roof", "roof tiles", "tiles"],
    ("rocket", "hull"): ["rocket body", "fuselage", "porthole", "white tube"],
    ("rocket", "nose"): ["nose cone", "rocket tip", "red tip"],
    ("snowman", "body"): ["snowballs", "snow", "white balls", "buttons", "eyes"],
    ("snowman", "nose"): ["carrot", "carrot nose"],
    ("boat", "hull"): ["boat", "boat hull", "wooden hull", "bottom of the boat"],
    ("flower", "stem"): ["flower stem", "leaf", "green stalk"],
    ("mushroom", "stem"): ["mushroom stem", "white stalk"],
    ("lighthouse", "roof"): ["lighthouse roof", "dome", "top roof"],
    ("lighthouse", "lantern"): ["light room", "yellow light"],
}

CLASS_PART_VOCABULARY: dict[str, dict[str, list[str]]] = {
    c: {p: PART_VOCABULARY[p] + _CLASS_SPECIFIC_PHRASES.get((c, p), []) for p in parts}
    for c, parts in CLASS_PARTS.items()
}

# Per-channel statistics of TRAIN_SEED images (first 2,000), rounded; used by Normalize.
MEAN = (0.551, 0.549, 0.541)
STD = (0.191, 0.187, 0.195)

_SS = 2  # supersampling factor: draw at 2x, box-downsample for antialiased edges
_CACHE_SIZE = 32


# --------------------------------------------------------------------------------------------- colours
def _jitter(rng, rgb, amount=18, bright=(0.85, 1.12)):
    b = rng.uniform(*bright)
    c = np.asarray(rgb, np.float64) * b + rng.uniform(-amount, amount, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def _pick(rng, palette, **kw):
    return _jitter(rng, palette[rng.integers(len(palette))], **kw)


def _darker(rgb, f=0.5):
    return tuple(int(v * f) for v in rgb)


def _hsv(rng, s=(0.1, 0.6), v=(0.45, 0.95)):
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*s), rng.uniform(*v))
    return (int(r * 255), int(g * 255), int(b * 255))


# --------------------------------------------------------------------------------------------- canvas
class _Canvas:
    """Draws primitives in an object's local frame onto a supersampled RGB image and a region map.

    Local frame: the object roughly fills [-1, 1]^2, y pointing down. Every draw call paints into a
    *region* (an id in the label image); each region belongs to one part (or to none: clutter), and
    may carry a texture applied after downsampling.
    """

    def __init__(self, img, lab, size):
        self.draw = ImageDraw.Draw(img)
        self.ldraw = ImageDraw.Draw(lab)
        self.size = size
        self.region_part: list[str | None] = [None]  # region id -> part name (id 0: background)
        self.textures: list[tuple[int, str, dict, tuple]] = []
        self.set_frame((size / 2, size / 2), 1.0, 0.0, 1.0)

    def set_frame(self, center, scale, angle_deg, flip=1.0):
        a = math.radians(angle_deg)
        ca, sa = math.cos(a), math.sin(a)
        self.frame = (center[0], center[1], scale, ca, sa, flip)
        s = scale * _SS
        # local (u, v) -> supersampled pixel: c + s * R(a) @ diag(flip, 1) @ (u, v)
        self._m = np.array([[s * ca * flip, -s * sa], [s * sa * flip, s * ca]])
        self._t = np.array([center[0] * _SS, center[1] * _SS])
        self.scale = scale

    def region(self, part=None, texture=None, **params):
        rid = len(self.region_part)
        if rid > 255:
            raise RuntimeError("too many regions in one image")
        self.region_part.append(part)
        if texture is not None:
            self.textures.append((rid, texture, params, self.frame))
        return rid

    def _xy(self, pts):
        p = np.asarray(pts, np.float64).reshape(-1, 2) @ self._m.T + self._t
        return [tuple(q) for q in p.tolist()]

    def _width(self, rel):
        return max(1, int(round(rel * self.scale * _SS)))

    def poly(self, pts, fill, rid, outline=0.035):
        xy = self._xy(pts)
        if outline:
            w = self._width(outline)
            self.draw.polygon(xy, fill=fill, outline=_darker(fill), width=w)
            self.ldraw.polygon(xy, fill=rid, outline=rid, width=w)
        else:
            self.draw.polygon(xy, fill=fill)
            self.ldraw.polygon(xy, fill=rid)

    def circle(self, c, r, fill, rid, outline=0.035):
        ((x, y),) = self._xy([c])
        rr = r * self.scale * _SS
        box = [x - rr, y - rr, x + rr, y + rr]
        if outline:
            w = self._width(outline)
            self.draw.ellipse(box, fill=fill, outline=_darker(fill), width=w)
            self.ldraw.ellipse(box, fill=rid, outline=rid, width=w)
        else:
            self.draw.ellipse(box, fill=fill)
            self.ldraw.ellipse(box, fill=rid)

    def rect(self, x0, y0, x1, y1, fill, rid, outline=0.035):
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], fill, rid, outline)

    def ellipse(self, c, rx, ry, fill, rid, rot=0.0, outline=0.035, n=28):
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        ca, sa = math.cos(rot), math.sin(rot)
        x, y = rx * np.cos(t), ry * np.sin(t)
        pts = np.stack([c[0] + ca * x - sa * y, c[1] + sa * x + ca * y], 1)
        self.poly(pts, fill, rid, outline)

    def bar(self, p0, p1, w, fill, rid, outline=0.0):
        p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
        d = p1 - p0
        n = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-9) * (w / 2)
        self.poly([p0 + n, p1 + n, p1 - n, p0 - n], fill, rid, outline)


# --------------------------------------------------------------------------------------------- classes
# Each painter draws one object in its local frame; parts are drawn back to front.


def _car(cv, rng):
    body_c = _pick(
        rng,
        [
            (200, 30, 35),
            (30, 80, 200),
            (240, 200, 30),
            (40, 150, 60),
            (240, 120, 20),
            (232, 232, 232),
            (45, 45, 52),
            (20, 150, 160),
        ],
    )
    glass = _pick(rng, [(170, 215, 240), (140, 200, 235), (190, 230, 245)], amount=10)
    L = rng.uniform(0.88, 1.0)
    cab0, cab1 = rng.uniform(-0.6, -0.4), rng.uniform(0.3, 0.5)
    top = rng.uniform(-0.55, -0.42)
    body = cv.region("body", "gloss")
    cv.poly(
        [
            (-L, 0.42),
            (-L, 0.02),
            (-L + 0.1, -0.1),
            (cab0 - 0.05, -0.12),
            (cab0 + 0.12, top),
            (cab1 - 0.12, top),
            (cab1 + 0.08, -0.12),
            (L - 0.08, -0.08),
            (L, 0.05),
            (L, 0.42),
        ],
        body_c,
        body,
    )
    # headlight and bumper belong to the body
    cv.circle((L - 0.07, 0.06), 0.05, (250, 240, 170), body, outline=0.02)
    cv.rect(-L - 0.02, 0.32, -L + 0.14, 0.4, (90, 90, 95), body, outline=0.0)
    win = cv.region("windows", "shine")
    mid = (cab0 + cab1) / 2
    cv.poly(
        [(cab0 + 0.08, -0.14), (cab0 + 0.17, top + 0.07), (mid - 0.04, top + 0.07), (mid - 0.04, -0.14)],
        glass,
        win,
        outline=0.025,
    )
    cv.poly(
        [(mid + 0.04, -0.14), (mid + 0.04, top + 0.07), (cab1 - 0.15, top + 0.07), (cab1 + 0.0, -0.14)],
        glass,
        win,
        outline=0.025,
    )
    wheels = cv.region("wheels")
    r = rng.uniform(0.2, 0.25)
    hub = _pick(rng, [(190, 190, 195), (220, 200, 120), (150, 150, 160)], amount=8)
    for x in (-L + 0.35, L - 0.35):
        cv.circle((x, 0.42), r, (28, 28, 30), wheels, outline=0.02)
        cv.circle((x, 0.42), r * 0.45, hub, wheels, outline=0.02)


def _house(cv, rng):
    wall_c = _pick(
        rng, [(230, 210, 170), (200, 110, 80), (240, 230, 200), (185, 185, 180), (250, 220, 120), (230, 180, 180)]
    )
    roof_c = _pick(rng, [(165, 40, 30), (110, 60, 40), (70, 70, 82), (40, 95, 60), (190, 90, 40)])
    door_c = _pick(rng, [(110, 70, 40), (40, 70, 140), (150, 30, 30), (40, 110, 60)])
    w = rng.uniform(0.6, 0.8)
    eave = rng.uniform(-0.25, -0.1)
    walls = cv.region("walls", "bricks", row=rng.uniform(0.1, 0.14))
    cv.rect(-w, eave, w, 0.92, wall_c, walls)
    roof = cv.region("roof", "tiles", row=rng.uniform(0.09, 0.13))
    cv.poly([(-w - 0.15, eave + 0.02), (0, rng.uniform(-0.98, -0.8)), (w + 0.15, eave + 0.02)], roof_c, roof)
    dx = rng.uniform(-w + 0.3, w - 0.3)
    door = cv.region("door", "wood")
    cv.rect(dx - 0.14, rng.uniform(0.4, 0.5), dx + 0.14, 0.92, door_c, door)
    cv.circle((dx + 0.08, 0.7), 0.03, (230, 200, 80), door, outline=0.0)
    win = cv.region("windows", "shine")
    glass = _pick(rng, [(170, 215, 240), (250, 230, 140), (150, 200, 230)], amount=10)
    frame = _pick(rng, [(245, 245, 245), (90, 60, 40), (60, 60, 60)], amount=8)
    for wx in (-w + 0.22, w - 0.22):
        if abs(wx - dx) < 0.38:
            continue
        cv.rect(wx - 0.15, 0.05, wx + 0.15, 0.35, glass, win, outline=0.03)
        cv.bar((wx, 0.05), (wx, 0.35), 0.03, frame, win)
        cv.bar((wx - 0.15, 0.2), (wx + 0.15, 0.2), 0.03, frame, win)


def _clock(cv, rng):
    rim_c = _pick(rng, [(40, 40, 40), (195, 165, 60), (180, 180, 192), (170, 40, 40), (40, 70, 160), (30, 120, 90)])
    face_c = _pick(rng, [(250, 250, 245), (245, 235, 210), (250, 245, 215)], amount=6, bright=(0.95, 1.02))
    hand_c = _pick(rng, [(20, 20, 20), (150, 20, 20), (30, 30, 90)], amount=10)
    rim = cv.region("rim", "gloss")
    cv.circle((0, 0), 0.96, rim_c, rim)
    face = cv.region("face")
    cv.circle((0, 0), rng.uniform(0.74, 0.82), face_c, face, outline=0.02)
    tick_c = _darker(hand_c, 0.9) if rng.random() < 0.5 else (60, 60, 60)
    for k in range(12):
        a = k * math.pi / 6
        r0 = 0.58 if k % 3 == 0 else 0.64
        cv.bar(
            (r0 * math.cos(a), r0 * math.sin(a)),
            (0.72 * math.cos(a), 0.72 * math.sin(a)),
            0.06 if k % 3 == 0 else 0.035,
            tick_c,
            face,
        )
    hands = cv.region("hands")
    ah, am = rng.uniform(0, 2 * math.pi, 2)
    cv.poly(
        [
            (0.05 * math.cos(ah + 1.6), 0.05 * math.sin(ah + 1.6)),
            (0.42 * math.cos(ah), 0.42 * math.sin(ah)),
            (0.05 * math.cos(ah - 1.6), 0.05 * math.sin(ah - 1.6)),
        ],
        hand_c,
        hands,
        outline=0.0,
    )
    cv.bar((0, 0), (0.64 * math.cos(am), 0.64 * math.sin(am)), 0.06, hand_c, hands)
    cv.circle((0, 0), 0.07, hand_c, hands, outline=0.0)


def _tree(cv, rng):
    trunk_c = _pick(rng, [(110, 70, 40), (90, 60, 40), (130, 90, 60)], amount=10)
    leaf = [(50, 140, 50), (30, 110, 40), (90, 170, 60), (25, 95, 55)]
    if rng.random() < 0.15:
        leaf = [(210, 120, 30), (200, 70, 30), (220, 170, 40)]
    crown_c = _pick(rng, leaf)
    tw = rng.uniform(0.1, 0.16)
    trunk = cv.region("trunk", "bark")
    cv.poly([(-tw * 1.3, 1.0), (-tw, 0.05), (tw, 0.05), (tw * 1.3, 1.0)], trunk_c, trunk)
    crown = cv.region("crown", "leaves")
    if rng.random() < 0.6:  # round, leafy crown: overlapping circles
        n = rng.integers(4, 7)
        for k in range(n):
            a = 2 * math.pi * k / n + rng.uniform(-0.3, 0.3)
            cv.circle(
                (0.42 * math.cos(a), -0.35 + 0.32 * math.sin(a)),
                rng.uniform(0.33, 0.42),
                _jitter(rng, crown_c, amount=8, bright=(0.92, 1.06)),
                crown,
            )
        cv.circle((0, -0.35), 0.45, crown_c, crown, outline=0.0)
    else:  # pine: stacked triangles
        n = rng.integers(2, 4)
        for k in range(n):
            y0 = 0.25 - k * 0.38
            hw = 0.85 - k * 0.2
            cv.poly([(-hw, y0), (0, y0 - 0.62), (hw, y0)], _jitter(rng, crown_c, amount=6, bright=(0.95, 1.05)), crown)


def _rocket(cv, rng):
    hull_c = _pick(
        rng, [(232, 232, 238), (205, 205, 215), (244, 244, 244), (185, 195, 205)], amount=8, bright=(0.95, 1.05)
    )
    accent = [(210, 40, 40), (40, 80, 200), (240, 140, 20), (60, 60, 72)][rng.integers(4)]
    hw = rng.uniform(0.22, 0.28)
    y_top, y_bot = -0.42, rng.uniform(0.5, 0.62)
    flame = cv.region("flame", "flicker")
    fl = rng.uniform(0.85, 1.0)
    cv.poly(
        [
            (-hw * 0.8, y_bot),
            (-hw * 0.5, fl - 0.1),
            (-hw * 0.15, fl - 0.02),
            (0, fl + 0.03),
            (hw * 0.15, fl - 0.02),
            (hw * 0.5, fl - 0.1),
            (hw * 0.8, y_bot),
        ],
        _jitter(rng, (250, 150, 20), amount=10),
        flame,
        outline=0.0,
    )
    cv.poly(
        [(-hw * 0.45, y_bot), (0, fl - 0.12), (hw * 0.45, y_bot)],
        _jitter(rng, (252, 230, 90), amount=6),
        flame,
        outline=0.0,
    )
    fins = cv.region("fins")
    fin_c = _jitter(rng, accent)
    for sx in (-1, 1):
        cv.poly([(sx * hw * 0.9, y_bot - 0.45), (sx * (hw + 0.3), y_bot + 0.08), (sx * hw * 0.9, y_bot)], fin_c, fins)
    hull = cv.region("hull", "panels")
    cv.rect(-hw, y_top, hw, y_bot, hull_c, hull)
    cv.circle((0, -0.12), hw * 0.55, (150, 150, 160), hull, outline=0.0)
    cv.circle((0, -0.12), hw * 0.4, (120, 190, 240), hull, outline=0.0)
    nose = cv.region("nose")
    cv.poly([(-hw, y_top + 0.01), (0, rng.uniform(-1.0, -0.88)), (hw, y_top + 0.01)], _jitter(rng, accent), nose)


def _snowman(cv, rng):
    snow = _pick(rng, [(245, 245, 250), (232, 240, 252), (250, 250, 245)], amount=5, bright=(0.96, 1.02))
    hat_c = _pick(rng, [(25, 25, 30), (40, 40, 95), (110, 20, 30), (60, 40, 30)], amount=8)
    n_balls = 3 if rng.random() < 0.6 else 2
    if n_balls == 3:
        balls = [(0.62, 0.36), (0.08, 0.28), (-0.36, 0.2)]
    else:
        balls = [(0.5, 0.45), (-0.2, 0.28)]
    hy = balls[-1][0]
    hr = balls[-1][1]
    arms = cv.region("arms")
    arm_c = _pick(rng, [(100, 65, 35), (80, 55, 30)], amount=8)
    ay = balls[-2][0] - 0.05
    for sx in (-1, 1):
        tip = (sx * 0.95, ay - rng.uniform(0.15, 0.4))
        cv.bar((sx * 0.2, ay), tip, 0.05, arm_c, arms)
        cv.bar((sx * 0.75, ay - 0.12), (sx * 0.85, ay - 0.35), 0.04, arm_c, arms)
    body = cv.region("body", "speckle")
    for y, r in balls:
        cv.circle((0, y), r, snow, body, outline=0.025)
    dark = (30, 30, 35)
    for k in range(3 if n_balls == 3 else 2):
        cv.circle((0, balls[-2][0] - 0.12 + k * 0.12), 0.04, dark, body, outline=0.0)
    cv.circle((-0.08, hy - 0.04), 0.035, dark, body, outline=0.0)
    cv.circle((0.08, hy - 0.04), 0.035, dark, body, outline=0.0)
    nose = cv.region("nose")
    cv.poly(
        [(0.0, hy + 0.015), (rng.uniform(0.22, 0.32), hy + 0.06), (0.0, hy + 0.1)],
        _pick(rng, [(250, 130, 20), (240, 100, 20)], amount=8),
        nose,
        outline=0.015,
    )
    hat = cv.region("hat")
    top = hy - hr
    cv.rect(-hr * 1.05, top + 0.02, hr * 1.05, top + 0.08, hat_c, hat, outline=0.02)
    cv.rect(-hr * 0.65, top - 0.3, hr * 0.65, top + 0.04, hat_c, hat, outline=0.02)
    cv.rect(
        -hr * 0.65,
        top - 0.05,
        hr * 0.65,
        top + 0.03,
        _pick(rng, [(190, 30, 30), (200, 180, 60), (60, 120, 60)]),
        hat,
        outline=0.0,
    )


def _flower(cv, rng):
    petal_c = _pick(
        rng,
        [
            (240, 120, 170),
            (200, 60, 180),
            (235, 55, 60),
            (250, 210, 40),
            (250, 250, 250),
            (160, 90, 220),
            (250, 150, 40),
        ],
    )
    center_c = _pick(rng, [(250, 200, 30), (110, 70, 30), (240, 140, 20)], amount=10)
    green = _pick(rng, [(60, 150, 50), (40, 120, 40), (80, 160, 60)], amount=10)
    cy = rng.uniform(-0.45, -0.3)
    stem = cv.region("stem")
    bend = rng.uniform(-0.2, 0.2)
    cv.poly([(-0.05, cy), (0.05, cy), (0.05 + bend, 1.0), (-0.05 + bend, 1.0)], green, stem, outline=0.02)
    sx = 1 if rng.random() < 0.5 else -1
    cv.ellipse((sx * 0.2 + bend / 2, 0.55), 0.22, 0.08, green, stem, rot=-sx * 0.5, outline=0.02)
    petals = cv.region("petals", "veins", cy=cy)
    n = int(rng.integers(5, 9))
    pr = rng.uniform(0.22, 0.3)
    orbit = rng.uniform(0.3, 0.36)
    a0 = rng.uniform(0, 2 * math.pi)
    round_petals = rng.random() < 0.5
    for k in range(n):
        a = a0 + 2 * math.pi * k / n
        c = (orbit * math.cos(a), cy + orbit * math.sin(a))
        if round_petals:
            cv.circle(c, pr, petal_c, petals, outline=0.025)
        else:
            cv.ellipse(c, pr * 1.35, pr * 0.7, petal_c, petals, rot=a, outline=0.025)
    center = cv.region("center", "seeds")
    cv.circle((0, cy), rng.uniform(0.17, 0.22), center_c, center, outline=0.025)


def _boat(cv, rng):
    hull_c = _pick(rng, [(140, 80, 40), (170, 40, 40), (40, 60, 130), (30, 100, 70), (240, 240, 235)])
    sail_c = _pick(rng, [(250, 250, 245), (245, 235, 205), (220, 60, 50), (250, 200, 60)], amount=8)
    mx = rng.uniform(-0.15, 0.1)
    deck = rng.uniform(0.3, 0.4)
    mast = cv.region("mast")
    cv.rect(mx - 0.035, -0.95, mx + 0.035, deck, _pick(rng, [(100, 65, 35), (80, 80, 80)]), mast, outline=0.02)
    striped = rng.random() < 0.35
    sail = cv.region("sail", "sailstripes" if striped else "cloth")
    cv.poly(
        [(mx + 0.06, -0.9), (mx + 0.06, deck - 0.08), (rng.uniform(0.7, 0.85), deck - 0.08)],
        sail_c,
        sail,
        outline=0.025,
    )
    if rng.random() < 0.6:  # jib
        cv.poly(
            [(mx - 0.06, -0.78), (mx - 0.06, deck - 0.08), (-rng.uniform(0.55, 0.75), deck - 0.08)],
            sail_c,
            sail,
            outline=0.025,
        )
    hull = cv.region("hull", "planks")
    bottom = deck + rng.uniform(0.3, 0.4)
    cv.poly([(-0.98, deck), (0.98, deck), (0.68, bottom), (-0.62, bottom)], hull_c, hull)


def _mushroom(cv, rng):
    cap_c = _pick(rng, [(210, 40, 35), (150, 90, 50), (230, 120, 30), (130, 60, 140)])
    stem_c = _pick(rng, [(240, 235, 220), (225, 215, 190)], amount=6, bright=(0.95, 1.03))
    spot_c = _pick(rng, [(250, 250, 245), (245, 235, 210)], amount=5, bright=(0.97, 1.02))
    base = rng.uniform(0.0, 0.12)
    rx, ry = rng.uniform(0.8, 0.95), rng.uniform(0.7, 0.85)
    stem = cv.region("stem", "fibres")
    sw = rng.uniform(0.2, 0.28)
    cv.poly([(-sw, base - 0.05), (sw, base - 0.05), (sw * 1.25, 0.92), (-sw * 1.25, 0.92)], stem_c, stem)
    cap = cv.region("cap", "gloss")
    t = np.linspace(math.pi, 2 * math.pi, 24)
    pts = np.stack([rx * np.cos(t), base + ry * np.sin(t)], 1)
    pts = np.concatenate([pts, [(rx * 0.9, base + 0.08), (-rx * 0.9, base + 0.08)]])
    cv.poly(pts, cap_c, cap)
    spots = cv.region("spots")
    n = int(rng.integers(3, 7))
    for k in range(n):
        a = math.pi + (k + 0.5 + rng.uniform(-0.25, 0.25)) * math.pi / n
        rr = rng.uniform(0.35, 0.7)
        cv.circle(
            (rx * rr * math.cos(a), base + ry * rr * math.sin(a)), rng.uniform(0.08, 0.13), spot_c, spots, outline=0.015
        )


def _lighthouse(cv, rng):
    band_c = [(215, 40, 40), (40, 60, 160), (35, 35, 38), (40, 130, 70)][rng.integers(4)]
    band_c = _jitter(rng, band_c, amount=10)
    white = _jitter(rng, (245, 245, 245), amount=5, bright=(0.95, 1.02))
    roof_c = _pick(rng, [(200, 40, 40), (30, 30, 30), (40, 100, 60), (40, 60, 160)])
    tower = cv.region("tower")
    bot, top = 0.95, -0.32
    wb, wt = rng.uniform(0.32, 0.4), rng.uniform(0.2, 0.25)
    n = int(rng.integers(4, 7))
    for k in range(n):
        y0 = bot + (top - bot) * k / n
        y1 = bot + (top - bot) * (k + 1) / n
        w0 = wb + (wt - wb) * k / n
        w1 = wb + (wt - wb) * (k + 1) / n
        cv.poly([(-w0, y0), (w0, y0), (w1, y1), (-w1, y1)], band_c if k % 2 == 0 else white, tower, outline=0.0)
    cv.poly([(-wb, bot), (wb, bot), (wt, top), (-wt, top)], white, tower, outline=0.0)
    for k in range(0, n, 2):  # repaint bands over the outline-free base
        y0 = bot + (top - bot) * k / n
        y1 = bot + (top - bot) * (k + 1) / n
        w0 = wb + (wt - wb) * k / n
        w1 = wb + (wt - wb) * (k + 1) / n
        cv.poly([(-w0, y0), (w0, y0), (w1, y1), (-w1, y1)], band_c, tower, outline=0.0)
    cv.rect(-wt - 0.1, top - 0.02, wt + 0.1, top + 0.05, (70, 70, 75), tower, outline=0.015)
    cv.rect(-0.09, bot - 0.22, 0.09, bot, (70, 50, 40), tower, outline=0.015)
    lantern = cv.region("lantern", "glow")
    lt = top - rng.uniform(0.25, 0.32)
    cv.rect(-wt * 0.85, lt, wt * 0.85, top - 0.02, _jitter(rng, (252, 230, 100), amount=6), lantern, outline=0.03)
    cv.bar((0, lt), (0, top - 0.02), 0.03, (60, 60, 60), lantern)
    roof = cv.region("roof")
    cv.poly([(-wt * 1.15, lt + 0.01), (0, lt - rng.uniform(0.3, 0.42)), (wt * 1.15, lt + 0.01)], roof_c, roof)
    cv.circle((0, lt - 0.3), 0.04, roof_c, roof, outline=0.0)


_PAINTERS = {
    "car": _car,
    "house": _house,
    "clock": _clock,
    "tree": _tree,
    "rocket": _rocket,
    "snowman": _snowman,
    "flower": _flower,
    "boat": _boat,
    "mushroom": _mushroom,
    "lighthouse": _lighthouse,
}
# Rotation range in degrees (clocks look right at any angle, houses barely lean).
_ROTATION = {
    "car": 15,
    "house": 10,
    "clock": 180,
    "tree": 12,
    "rocket": 35,
    "snowman": 12,
    "flower": 25,
    "boat": 15,
    "mushroom": 15,
    "lighthouse": 8,
}


# --------------------------------------------------------------------------------------------- textures
def _texture(name, u, v, rng, p):
    """Multiplicative shading (around 1) in a region's frame; u, v in local object units."""
    if name == "gloss":
        return 1.0 + 0.22 * np.clip(-v - 0.1, 0.0, 0.6) - 0.12 * np.clip(v - 0.1, 0.0, 0.6)
    if name == "shine":
        return 1.0 + 0.25 * (np.sin((u + v) * 9.0) > 0.75)
    if name == "bricks":
        h = p.get("row", 0.12)
        row = np.floor(v / h)
        fv = v / h - row
        fu = (u + (row % 2) * h) / (2 * h)
        mortar = (fv < 0.14) | (fu - np.floor(fu) < 0.07)
        return np.where(mortar, 0.72, 1.0 + 0.05 * np.sin(row * 7.3))
    if name == "tiles":
        h = p.get("row", 0.11)
        return np.where((v / h) % 1.0 < 0.18, 0.72, 1.0)
    if name == "wood":
        return 1.0 + 0.1 * np.sin(u * 45.0 + 2.0 * np.sin(v * 6.0))
    if name == "bark":
        return 1.0 + 0.16 * np.sin(u * 60.0 + 3.0 * np.sin(v * 9.0))
    if name == "leaves":
        return 1.0 - 0.16 * ((np.sin(u * 23.0 + 1.7 * np.sin(v * 11.0)) * np.sin(v * 21.0)) > 0.3)
    if name == "panels":
        return np.where((v * 5.0) % 1.0 < 0.06, 0.8, 1.0) + 0.12 * np.clip(-u, -0.3, 0.3)
    if name == "flicker":
        return 1.0 + 0.12 * np.sin(u * 30.0) * np.sin(v * 17.0)
    if name == "speckle":
        return 1.0 - 0.07 * rng.random(u.shape) + 0.08 * np.clip(-u - v, -1, 1) * 0.5
    if name == "veins":
        return 1.0 - 0.1 * (np.sin(np.arctan2(v - p.get("cy", 0.0), u) * 24.0) > 0.6)
    if name == "seeds":
        return 1.0 - 0.25 * ((np.sin(u * 70.0) * np.sin(v * 70.0)) > 0.45)
    if name == "cloth":
        return 1.0 - 0.06 * (np.sin(v * 40.0) > 0.5)
    if name == "sailstripes":
        return np.where(np.sin(u * 12.0) > 0.0, 1.0, 0.55)
    if name == "planks":
        return np.where((v * 10.0) % 1.0 < 0.12, 0.7, 1.0)
    if name == "fibres":
        return 1.0 - 0.08 * (np.sin(u * 50.0 + np.sin(v * 5.0)) > 0.3)
    if name == "glow":
        return 1.0 + 0.18 * np.clip(1.0 - 6.0 * np.abs(u), 0.0, 1.0)
    # clutter textures
    if name == "stripes":
        a = p["angle"]
        return np.where(np.sin((u * math.cos(a) + v * math.sin(a)) * p["freq"]) > 0, 1.0, p["dark"])
    if name == "checker":
        f = p["freq"]
        return np.where((np.floor(u * f) + np.floor(v * f)) % 2 == 0, 1.0, p["dark"])
    if name == "dots":
        f = p["freq"]
        return np.where(np.sin(u * f) * np.sin(v * f) > 0.5, p["dark"], 1.0)
    raise ValueError(f"unknown texture {name!r}")


_CLUTTER_TEXTURES = ("stripes", "checker", "dots")


def _clutter_texture(cv, rng, part=None):
    name = _CLUTTER_TEXTURES[rng.integers(3)]
    return cv.region(part, name, angle=rng.uniform(0, math.pi), freq=rng.uniform(0.6, 1.4), dark=rng.uniform(0.6, 0.85))


# --------------------------------------------------------------------------------------------- images
def _grid(size):
    g = _GRIDS.get(size)
    if g is None:
        y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
        g = _GRIDS[size] = (x, y)
    return g


_GRIDS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _background(rng, size):
    x, y = _grid(size)
    c0 = np.array(_hsv(rng), np.float32)
    c1 = np.array(_hsv(rng), np.float32)
    a = rng.uniform(0, 2 * math.pi)
    t = ((x - size / 2) * math.cos(a) + (y - size / 2) * math.sin(a)) / size + 0.5
    img = c0 + (c1 - c0) * np.clip(t, 0, 1)[..., None]
    kind = rng.integers(5)
    if kind == 0:  # soft clouds: low-frequency noise
        k = int(rng.integers(3, 7))
        small = Image.fromarray((rng.random((k, k)) * 255).astype(np.uint8))
        n = np.asarray(small.resize((size, size), Image.BICUBIC), np.float32) / 255.0
        shade = 1.0 + rng.uniform(0.15, 0.35) * (n - 0.5)
    elif kind == 1:  # stripes
        b = rng.uniform(0, math.pi)
        f = rng.uniform(0.15, 0.5)
        shade = 1.0 + rng.uniform(0.06, 0.14) * np.clip(
            3.0 * np.sin((x * math.cos(b) + y * math.sin(b)) * f), -1.0, 1.0
        )
    elif kind == 2:  # checkerboard
        f = rng.uniform(8, 24)
        shade = np.where((np.floor(x / f) + np.floor(y / f)) % 2 == 0, 1.0, 1.0 - rng.uniform(0.06, 0.14))
    elif kind == 3:  # polka dots
        f = rng.uniform(0.25, 0.6)
        shade = np.where(np.sin(x * f) * np.sin(y * f) > 0.6, 1.0 - rng.uniform(0.08, 0.18), 1.0)
    else:  # grainy
        k = size // 4
        small = Image.fromarray((rng.random((k, k)) * 255).astype(np.uint8))
        n = np.asarray(small.resize((size, size), Image.BILINEAR), np.float32) / 255.0
        shade = 1.0 + rng.uniform(0.1, 0.2) * (n - 0.5)
    return img * shade[..., None]


def _distractor(cv, rng, size):
    """One clutter shape in image coordinates (local unit = 1 pixel)."""
    cv.set_frame((rng.uniform(0, size), rng.uniform(0, size)), 1.0, rng.uniform(0, 360))
    r = rng.uniform(5, 17) * size / 128
    colour = _hsv(rng, s=(0.2, 0.9), v=(0.3, 0.95))
    rid = _clutter_texture(cv, rng) if rng.random() < 0.35 else cv.region(None)
    kind = rng.integers(6)
    ow = 1.2 if rng.random() < 0.5 else 0.0  # outline width in pixels (frame unit = 1 pixel)
    if kind == 0:
        cv.circle((0, 0), r, colour, rid, outline=ow)
    elif kind == 1:
        cv.poly([(-r, r * 0.8), (0, -r), (r, r * 0.8)], colour, rid, outline=ow)
    elif kind == 2:
        cv.rect(-r, -r * rng.uniform(0.3, 1.0), r, r * rng.uniform(0.3, 1.0), colour, rid, outline=ow)
    elif kind == 3:
        cv.bar((-r * 1.5, 0), (r * 1.5, 0), r * rng.uniform(0.15, 0.35), colour, rid)
    elif kind == 4:
        cv.ellipse((0, 0), r, r * rng.uniform(0.35, 0.7), colour, rid, outline=ow)
    else:  # ring
        cv.circle((0, 0), r, colour, rid, outline=0)
        cv.circle((0, 0), r * 0.55, tuple(int(v) for v in colour[::-1]), rid, outline=0)


def _occluder(cv, rng, center, scale, size):
    """Something in front of the object: a leaf, a ball, a post, a blob."""
    a = rng.uniform(0, 2 * math.pi)
    d = rng.uniform(0.45, 0.9) * scale
    cx, cy = center[0] + d * math.cos(a), center[1] + d * math.sin(a)
    cv.set_frame((cx, cy), 1.0, rng.uniform(0, 360))
    r = rng.uniform(0.22, 0.4) * scale
    colour = _hsv(rng, s=(0.3, 0.9), v=(0.3, 0.9))
    rid = _clutter_texture(cv, rng) if rng.random() < 0.5 else cv.region(None)
    kind = rng.integers(4)
    if kind == 0:
        cv.circle((0, 0), r, colour, rid, outline=1.2)
    elif kind == 1:
        cv.ellipse((0, 0), r * 1.4, r * 0.6, colour, rid, outline=1.2)
    elif kind == 2:
        cv.rect(-r * 1.4, -r * 0.45, r * 1.4, r * 0.45, colour, rid, outline=1.2)
    else:
        t = np.linspace(0, 2 * np.pi, 14, endpoint=False)
        rr = r * rng.uniform(0.7, 1.15, 14)
        cv.poly(np.stack([rr * np.cos(t), rr * np.sin(t)], 1), colour, rid, outline=1.2)


class _Both:
    """Two ImageDraw objects drawn alike (the occluder goes into the image and into its background)."""

    def __init__(self, a, b):
        self._a, self._b = a, b

    def __getattr__(self, name):
        fa, fb = getattr(self._a, name), getattr(self._b, name)
        return lambda *args, **kw: (fa(*args, **kw), fb(*args, **kw))[0]


def _render(seed: int, i: int, size: int, n_classes: int, background: bool = False):
    """Draw image i: returns (uint8 RGB array (H,W,3), region map (2H,2W) uint8, part lut, class).

    ``background=True`` returns only the same picture without the object (uint8 (H,W,3)): the same random
    draws, so every pixel the object does not touch is the image's own; what was behind the object is the
    background and clutter, and an occluder stays in front."""
    rng = np.random.default_rng([seed, i])
    # classes are balanced: every block of n_classes consecutive images holds each class once
    perm = np.random.default_rng([seed, i // n_classes, 0x5EED]).permutation(n_classes)
    y = int(perm[i % n_classes])
    cls = CLASSES[y]

    bg = _background(rng, size)
    big = size * _SS
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8)).resize((big, big), Image.NEAREST)
    lab = Image.new("L", (big, big), 0)
    cv = _Canvas(img, lab, size)

    for _ in range(int(rng.integers(2, 8))):
        _distractor(cv, rng, size)
    if background:  # the scene before the object, drawn on from here only by the occluder
        img0, lab0 = img.copy(), lab.copy()

    scale = rng.uniform(0.22, 0.37) * size
    margin = scale * 0.95
    center = (rng.uniform(margin, size - margin), rng.uniform(margin, size - margin))
    flip = -1.0 if rng.random() < 0.5 else 1.0
    cv.set_frame(center, scale, rng.uniform(-_ROTATION[cls], _ROTATION[cls]), flip)
    _PAINTERS[cls](cv, rng)

    if rng.random() < 0.3:
        if background:
            cv.draw, cv.ldraw = _Both(cv.draw, ImageDraw.Draw(img0)), _Both(cv.ldraw, ImageDraw.Draw(lab0))
        _occluder(cv, rng, center, scale, size)

    out = np.asarray(img.reduce(_SS), np.float32)
    labels = np.asarray(lab)
    lab1 = labels[_SS // 2 :: _SS, _SS // 2 :: _SS]
    if background:
        out0 = np.asarray(img0.reduce(_SS), np.float32)
        lab01 = np.asarray(lab0)[_SS // 2 :: _SS, _SS // 2 :: _SS]
    if cv.textures:
        x, yy = _grid(size)

        def shade(m, name, params, frame, r):
            fx, fy, s, ca, sa, fl = frame
            dx, dy = (x[m] - fx) / s, (yy[m] - fy) / s
            u, v = (ca * dx + sa * dy) * fl, -sa * dx + ca * dy
            return np.asarray(_texture(name, u, v, r, params), np.float32)[..., None]

        for rid, name, params, frame in cv.textures:
            m = lab1 == rid
            if m.any():
                out[m] *= shade(m, name, params, frame, rng)
            if background:  # clutter textures draw nothing at random: the same shading, rng left alone
                m0 = lab01 == rid
                if m0.any():
                    out0[m0] *= shade(m0, name, params, frame, np.random.default_rng(0))
    # a little sensor noise and a random overall exposure
    exposure = rng.uniform(0.9, 1.1)
    out *= exposure
    shift = rng.normal(0.0, 3.0, (1, 1, 3)).astype(np.float32)
    out += shift
    if background:
        return np.clip(out0 * exposure + shift, 0, 255).astype(np.uint8)
    rgb = np.clip(out, 0, 255).astype(np.uint8)

    parts = CLASS_PARTS[cls]
    lut = np.zeros(256, np.uint8)
    for rid, part in enumerate(cv.region_part):
        if part is not None:
            lut[rid] = parts.index(part) + 1
    return rgb, labels, lut, y


class PartsDataset:
    """Procedural images of objects made of named parts, with ground-truth part masks.

    Parameters
    ----------
    n : int
        Number of images (``len(data)``).
    seed : int
        Image ``i`` is drawn from ``numpy.random.default_rng([seed, i])``; see ``TRAIN_SEED``,
        ``VAL_SEED`` and ``EVAL_SEED``.
    size : int
        Image side in pixels (square images; 128 by default).
    offset : int
        Index of the first image in the seed's stream (``data[0]`` is image ``offset``); lets a
        training script draw fresh images every epoch without repeating any.

    Notes
    -----
    ``data[i]`` gives ``(x, y)``: the normalised float tensor (3, size, size) and the class index.
    ``data.image(i)`` is the picture as a person sees it, ``data.part_masks(i)`` the visible parts.
    """

    classes: list[str] = CLASSES
    part_vocabulary: dict[str, list[str]] = PART_VOCABULARY
    class_parts: dict[str, list[str]] = CLASS_PARTS
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD

    def __init__(self, n: int = 1000, seed: int = EVAL_SEED, size: int = 128, offset: int = 0):
        for name, val, lo in (("n", n, 0), ("seed", seed, 0), ("size", size, 32), ("offset", offset, 0)):
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < lo:
                raise ValueError(f"PartsDataset: {name} must be an integer >= {lo}, got {val!r}")
        self.n, self.seed, self.size, self.offset = int(n), int(seed), int(size), int(offset)
        self.classes = list(CLASSES)
        # drawn images, least recently used dropped. Not engine.runtime.LRU: this module stays importable
        # without torch (importing anything of the engine imports torch), and the dataset is pickled to
        # DataLoader workers (the LRU holds a lock).
        self._cache: OrderedDict[int, tuple] = OrderedDict()
        self._transform = None
        self._mean_col = np.asarray(self.mean, np.float32).reshape(3, 1, 1)
        self._std_col = np.asarray(self.std, np.float32).reshape(3, 1, 1)

    # -- torchvision transform, built lazily so that importing this module does not import torch
    @property
    def transform(self):
        """``Compose([ToTensor(), Normalize(mean, std)])``: PIL image -> model input."""
        if self._transform is None:
            from torchvision import transforms

            self._transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(self.mean, self.std)])
        return self._transform

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return (
            f"PartsDataset(n={self.n}, seed={self.seed}, size={self.size}"
            + (f", offset={self.offset}" if self.offset else "")
            + ")"
        )

    def _index(self, i) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"PartsDataset index must be an integer, got {type(i).__name__}")
        i = int(i)
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(f"PartsDataset index {i} out of range for {self.n} images")
        return i

    def _get(self, i):
        i = self._index(i)
        hit = self._cache.get(i)
        if hit is not None:
            self._cache.move_to_end(i)
            return hit
        hit = _render(self.seed, self.offset + i, self.size, len(CLASSES))
        self._cache[i] = hit
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return hit

    def __getitem__(self, i):
        rgb, _, _, y = self._get(i)
        return self.to_tensor(rgb), y

    def to_tensor(self, rgb) -> torch.Tensor:
        """Same result as ``self.transform`` for a uint8 (H, W, 3) array, computed in numpy.

        Many tiny torch ops are slow on a busy multi-threaded CPU; one numpy pass is not.
        """
        import torch

        x = np.asarray(rgb, np.float32).transpose(2, 0, 1) / np.float32(255.0)
        x = (x - self._mean_col) / self._std_col
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    def array(self, i) -> np.ndarray:
        """Image i as uint8 array (H, W, 3)."""
        return self._get(i)[0].copy()

    def image(self, i) -> Image.Image:
        """Image i as an RGB PIL image, as a person sees it (same size as the tensor)."""
        return Image.fromarray(self._get(i)[0])

    def background(self, i) -> np.ndarray:
        """Image i without its object, uint8 (H, W, 3): the same background, clutter and occluder, and the same
        pixels wherever the object does not reach. What deletion and insertion curves fill deleted pixels
        with (``python -m inv_widgets.eval faithfulness``); the demo CNN calls such images at chance."""
        return _render(self.seed, self.offset + self._index(i), self.size, len(CLASSES), background=True)

    def label(self, i) -> int:
        """Class index of image i (without drawing the tensor)."""
        return self._get(i)[3]

    def class_name(self, i) -> str:
        """The class name of image ``i`` (``classes[label(i)]``)."""
        return CLASSES[self.label(i)]

    def parts_of(self, cls) -> list[str]:
        """Part names of a class (name or index), back to front."""
        if isinstance(cls, (int, np.integer)) and not isinstance(cls, bool):
            cls = CLASSES[int(cls)]
        if cls not in CLASS_PARTS:
            raise KeyError(f"unknown class {cls!r}; classes are {CLASSES}")
        return list(CLASS_PARTS[cls])

    def part_masks(self, i) -> dict[str, np.ndarray]:
        """Visible parts of image i: part name -> bool mask (H, W). Fully hidden parts are omitted.

        A pixel belongs to the part covering most of its supersamples, provided that part covers at
        least half of them (ties go to the part in front). Masks therefore agree with the
        antialiased edges of the image, never overlap, and exclude whatever is drawn in front
        (other parts, occluders).
        """
        _, labels, lut, y = self._get(i)
        names = CLASS_PARTS[CLASSES[y]]
        h = w = self.size
        parts = lut[labels].reshape(h, _SS, w, _SS)
        cover = np.stack([(parts == k).sum(axis=(1, 3)) for k in range(1, len(names) + 1)])
        best = len(names) - 1 - np.argmax(cover[::-1], axis=0)  # ties -> later (front) part
        enough = np.take_along_axis(cover, best[None], 0)[0] * 2 >= _SS * _SS
        out = {}
        for k, name in enumerate(names):
            m = enough & (best == k)
            if m.any():
                out[name] = m
        return out

    def object_mask(self, i) -> np.ndarray:
        """Union of the visible part masks of image i, bool (H, W)."""
        m = np.zeros((self.size, self.size), bool)
        for v in self.part_masks(i).values():
            m |= v
        return m
