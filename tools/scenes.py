"""Deterministic synthetic "parking lot / street" scenes with exactly known ground truth.

A :class:`Scene` is a fixed camera: a seeded asphalt background and :class:`SceneObject` s moving
along piecewise-linear paths at constant speed. Rendering is a pure function of scene and time,
so tests can build a scene by hand (crossing a known line, entering a zone at a known time)::

    walker = SceneObject("person", path=((-30, 200), (670, 200)), speed=40, size=80)
    scene = Scene(640, 360, fps=15, duration_s=10, objects=(walker,), seed=1)
    frame, boxes = render_frame(scene, t_s=2.0)   # the walker's box centre is at x = 50
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

CLASSES = ("person", "car")
MIN_VISIBLE = 0.3  # an object less visible than this (frame edge, occlusion) gets no box
_SHIFT = 4  # cv2 fixed-point bits: sub-pixel drawing keeps slow motion smooth
_Colour = tuple[int, int, int]
# A drawing primitive in the object's box space: u, v in [0, 1] across the nominal box,
# lengths (thickness, radius) in units of the box height.
_Prim = tuple[str, tuple[float, ...], _Colour]


@dataclass(frozen=True)
class SceneObject:
    """One moving (or, with a single waypoint, standing) object.

    The centre of its nominal box is at ``path[0]`` at ``start_s`` and moves along the path at
    ``speed`` px/s; it is absent before ``start_s`` and after reaching the last waypoint.
    """

    label: str  # "person" or "car"
    path: tuple[tuple[float, float], ...]  # waypoints of the box centre, pixels
    speed: float = 0.0  # pixels per second along the path
    size: float = 80.0  # person: height; car: length; pixels
    colour: _Colour = (40, 40, 200)  # BGR: shirt, or car body
    colour2: _Colour = (90, 60, 40)  # BGR: trousers, or car windows
    skin: _Colour = (120, 160, 210)  # BGR, person only
    view: str = "side"  # car only: "side" or "top"
    start_s: float = 0.0
    pauses: tuple[float, ...] = ()  # seconds it stands at path[0], path[1], ... on its way

    @property
    def class_id(self) -> int:
        return CLASSES.index(self.label)

    @property
    def box_size(self) -> tuple[float, float]:
        """Nominal (width, height) of the box; the drawn box is within a pixel or two of it."""
        if self.label == "person":
            return 0.42 * self.size, self.size
        return self.size, (0.42 if self.view == "side" else 0.46) * self.size

    def state(self, t_s: float) -> tuple[float, float, float, float] | None:
        """(x, y, heading_x, distance travelled) at ``t_s``, or None when not in the scene."""
        if t_s < self.start_s:
            return None
        if len(self.path) == 1:
            return (*self.path[0], 1.0, 0.0)
        travel_s = t_s - self.start_s  # time spent moving
        reached = 0.0  # distance to the waypoint of each pause
        for i, pause_s in enumerate(self.pauses):
            reached += math.dist(self.path[i - 1], self.path[i]) if i else 0.0
            if travel_s <= reached / self.speed:
                break
            travel_s = max(reached / self.speed, travel_s - pause_s)
        left = dist = travel_s * self.speed
        for (x0, y0), (x1, y1) in zip(self.path, self.path[1:], strict=False):
            seg = math.hypot(x1 - x0, y1 - y0)
            if left <= seg and seg > 0:
                f = left / seg
                return x0 + f * (x1 - x0), y0 + f * (y1 - y0), math.copysign(1.0, x1 - x0), dist
            left -= seg
        return None


@dataclass(frozen=True)
class GroundTruthBox:
    object_id: int  # index into Scene.objects
    label: str
    class_id: int
    xyxy: tuple[float, float, float, float]  # pixels, clipped to the frame


@dataclass(frozen=True)
class Occluder:
    """Something in front of everything that moves (a pillar, a parked van, a sign): a
    filled rectangle, in pixels, that hides what passes behind it."""

    xyxy: tuple[int, int, int, int]
    colour: _Colour = (150, 150, 155)


@dataclass(frozen=True)
class Scene:
    width: int
    height: int
    fps: float
    duration_s: float
    objects: tuple[SceneObject, ...]
    seed: int = 0  # background texture and clutter
    kerb_y: float = 0.25  # kerb line, as a fraction of the height; sidewalk above it
    occluders: tuple[Occluder, ...] = ()

    @staticmethod
    def random(
        seed: int,
        width: int = 640,
        height: int = 360,
        n_objects: int | None = None,
        duration_s: float = 10.0,
        fps: float = 15.0,
    ) -> Scene:
        """A random scene whose objects cross the frame at random times during ``duration_s``."""
        rng = np.random.default_rng(seed)
        n = int(rng.integers(0, 9)) if n_objects is None else n_objects
        objects = tuple(_random_object(rng, width, height, duration_s) for _ in range(n))
        return Scene(width, height, fps, duration_s, objects, seed, float(rng.uniform(0.08, 0.5)))


def _colour(rng: np.random.Generator, palette: list[_Colour], jitter: float = 15) -> _Colour:
    base = np.array(palette[int(rng.integers(len(palette)))], float)
    b, g, r = (int(c) for c in np.clip(base + rng.uniform(-jitter, jitter, 3), 0, 255))
    return b, g, r


# fmt: off
_SHIRTS: list[_Colour] = [(40, 40, 200), (200, 80, 30), (40, 160, 40), (30, 200, 230),
                          (230, 230, 230), (30, 30, 30), (150, 50, 150), (0, 120, 255),
                          (180, 180, 60), (90, 90, 90)]
_TROUSERS: list[_Colour] = [(110, 60, 30), (30, 30, 30), (80, 130, 160), (70, 70, 70), (50, 40, 90)]
_SKINS: list[_Colour] = [(120, 160, 210), (90, 125, 170), (60, 85, 120), (150, 185, 225)]
_CARS: list[_Colour] = [(235, 235, 235), (35, 35, 35), (180, 180, 175), (40, 40, 190),
                        (150, 70, 20), (40, 90, 40), (30, 190, 220), (120, 120, 120), (90, 30, 30)]
_WINDOWS: list[_Colour] = [(70, 50, 35), (40, 40, 40), (95, 80, 60)]
# Side view outline, front at u = 1: bonnet, windscreen, roof, rear window, boot, sill.
_CAR_SIDE = (0.0, 0.58, 0.03, 0.38, 0.24, 0.32, 0.34, 0.04, 0.7, 0.04, 0.84, 0.32, 0.98, 0.4,
             1.0, 0.62, 0.98, 0.8, 0.02, 0.8)
# fmt: on


def _random_object(rng: np.random.Generator, w: int, h: int, duration_s: float) -> SceneObject:
    person = rng.random() < 0.6
    mid = (float(rng.uniform(-0.05, 1.05) * w), float(rng.uniform(0.0, 1.0) * h))
    # Cars are drawn side-on, so they drive roughly horizontally; people walk any way.
    angle = (
        rng.uniform(0, 2 * np.pi) if person else rng.choice([0, np.pi]) + rng.uniform(-0.25, 0.25)
    )
    reach = w + h  # enough to start and end off-frame from any mid-point
    if rng.random() < 0.15:
        path: tuple[tuple[float, float], ...] = (mid,)
        speed, start = 0.0, float(rng.uniform(-duration_s, 0.5 * duration_s))
    else:
        turn = rng.uniform(-0.8, 0.8) if rng.random() < 0.3 else 0.0  # piecewise: turn at mid
        a0, a1 = angle, angle + turn
        path = (
            (mid[0] - reach * math.cos(a0), mid[1] - reach * math.sin(a0)),
            mid,
            (mid[0] + reach * math.cos(a1), mid[1] + reach * math.sin(a1)),
        )
        speed = float(rng.uniform(20, 70) if person else rng.uniform(40, 180)) * w / 640
        start = float(rng.uniform(0, duration_s)) - reach / speed
    size = float(rng.uniform(0.1, 0.36) * h if person else rng.uniform(0.14, 0.42) * w)
    colour = _colour(rng, _SHIRTS if person else _CARS)
    colour2 = _colour(rng, _TROUSERS if person else _WINDOWS)
    skin, view = _colour(rng, _SKINS, 10), "side" if rng.random() < 0.75 else "top"
    label = "person" if person else "car"
    return SceneObject(label, path, speed, size, colour, colour2, skin, view, start)


def _person(obj: SceneObject, dist: float) -> list[_Prim]:
    # Seen from the side: legs and arms swing in opposite phase around the torso.
    swing = math.sin(2 * math.pi * dist / (0.9 * obj.size))
    shirt, trousers, skin = obj.colour, obj.colour2, obj.skin
    return [
        ("line", (0.5, 0.25, 0.5 + 0.4 * swing, 0.5, 0.07), skin),
        ("line", (0.47, 0.56, 0.5 - 0.38 * swing, 0.95, 0.1), trousers),
        ("line", (0.53, 0.56, 0.5 + 0.38 * swing, 0.95, 0.1), trousers),
        ("line", (0.5, 0.28, 0.5, 0.5, 0.26), shirt),
        ("line", (0.5, 0.25, 0.5 - 0.4 * swing, 0.5, 0.07), shirt),
        ("circle", (0.5, 0.085, 0.085), (30, 40, 50)),
        ("circle", (0.5, 0.1, 0.075), skin),
    ]


def _rounded_rect(u0: float, v0: float, u1: float, v1: float, r: float) -> tuple[float, ...]:
    pts: list[float] = []
    corners = [(u1 - r, v1 - r), (u0 + r, v1 - r), (u0 + r, v0 + r), (u1 - r, v0 + r)]
    for k, (cu, cv) in enumerate(corners):
        for d in range(90 * k, 90 * k + 91, 30):
            pts += [cu + r * math.cos(math.radians(d)), cv + r * math.sin(math.radians(d))]
    return tuple(pts)


def _car(obj: SceneObject) -> list[_Prim]:
    body, glass = obj.colour, obj.colour2
    dark = (int(body[0] * 0.6), int(body[1] * 0.6), int(body[2] * 0.6))
    tyre, hub = (25, 25, 25), (150, 150, 150)
    if obj.view == "top":  # from above: tyres peeking out, body, windscreens, roof; front at u = 1
        return [
            *(("line", (u, v, u + 0.14, v, 0.12), tyre) for u in (0.14, 0.72) for v in (0.1, 0.9)),
            ("poly", _rounded_rect(0.0, 0.12, 1.0, 0.88, 0.2), body),
            ("poly", (0.6, 0.22, 0.74, 0.16, 0.74, 0.84, 0.6, 0.78), glass),
            ("poly", (0.18, 0.2, 0.26, 0.24, 0.26, 0.76, 0.18, 0.8), glass),
            ("poly", _rounded_rect(0.28, 0.24, 0.58, 0.76, 0.05), dark),
        ]
    return [
        ("poly", _CAR_SIDE, body),
        ("poly", (0.3, 0.33, 0.38, 0.1, 0.51, 0.1, 0.51, 0.33), glass),
        ("poly", (0.55, 0.33, 0.55, 0.1, 0.68, 0.1, 0.79, 0.33), glass),
        ("line", (0.02, 0.62, 0.98, 0.62, 0.03), dark),
        ("line", (0.96, 0.45, 0.99, 0.47, 0.06), (150, 230, 240)),
        ("line", (0.01, 0.45, 0.02, 0.47, 0.06), (30, 30, 200)),
        *(("circle", (u, 0.8, r), c) for r, c in ((0.19, tyre), (0.08, hub)) for u in (0.2, 0.8)),
    ]


def _draw(
    prims: list[_Prim], origin: tuple[float, float], box: tuple[float, float], flip: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Draws into a premultiplied BGR patch and its alpha; ``origin``: the box's top-left."""
    (ox, oy), (bw, bh) = origin, box
    size = (math.ceil(bh) + 5, math.ceil(bw) + 5)
    patch, mask = np.zeros((*size, 3), np.uint8), np.zeros(size, np.uint8)
    s = 1 << _SHIFT

    def px(u: float, v: float) -> tuple[int, int]:
        return round((ox + (1 - u if flip else u) * bw) * s), round((oy + v * bh) * s)

    for kind, a, colour in prims:
        for img, col in ((patch, colour), (mask, (255, 255, 255))):
            if kind == "poly":
                pts = np.array([px(a[i], a[i + 1]) for i in range(0, len(a), 2)], np.int32)
                cv2.fillPoly(img, [pts], col, cv2.LINE_AA, _SHIFT)
            elif kind == "line":
                thick = max(1, round(a[4] * bh))
                cv2.line(img, px(a[0], a[1]), px(a[2], a[3]), col, thick, cv2.LINE_AA, _SHIFT)
            else:
                cv2.circle(img, px(a[0], a[1]), round(a[2] * bh * s), col, -1, cv2.LINE_AA, _SHIFT)
    return patch, mask


@functools.lru_cache(maxsize=16)
def _background(width: int, height: int, seed: int, kerb_y: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    low = rng.normal(0, 12, (height // 40 + 2, width // 40 + 2)).astype(np.float32)
    grey = np.asarray(cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC), np.float32)
    grey += rng.integers(-8, 9, (height, width), dtype=np.int8) + rng.uniform(75, 135)  # grain
    kerb = int(kerb_y * height)
    grey[:kerb] += rng.uniform(30, 60)  # sidewalk concrete, with tile joints
    tile = int(rng.integers(25, 60))
    grey[:kerb, ::tile] -= 25
    grey[:kerb:tile] -= 25
    grey8 = np.clip(grey, 0, 255).astype(np.uint8)
    tint = np.clip(np.rint(np.arange(256)[None, :, None] + rng.uniform(-6, 6, 3)), 0, 255)
    img = cv2.LUT(np.dstack([grey8] * 3), tint.astype(np.uint8))  # slight colour cast
    cv2.line(img, (0, kerb), (width, kerb), (175, 180, 180), 5)
    cv2.line(img, (0, kerb + 4), (width, kerb + 4), (45, 45, 45), 2)
    paint = (235, 235, 235) if rng.random() < 0.6 else (40, 190, 230)
    gap, slant = rng.uniform(60, 120), rng.uniform(-40, 40)
    stall = rng.uniform(0.2, 0.35) * height
    for x in np.arange(rng.uniform(0, gap), width, gap):  # parking stalls below the kerb
        cv2.line(img, (int(x), kerb + 6), (int(x + slant), int(kerb + 6 + stall)), paint, 3)
    lane = int(kerb + 6 + stall + rng.uniform(0.1, 0.3) * height)
    for x in range(int(rng.uniform(-60, 0)), width, 90):  # dashed lane marking
        cv2.line(img, (x, lane), (x + 45, lane), paint, 3)
    for _ in range(int(rng.integers(3, 10))):  # oil stains, manholes, bushes: static clutter
        centre = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
        axes = (int(rng.uniform(5, 40)), int(rng.uniform(4, 25)))
        kind = rng.random()
        colour = (40, 45, 45) if kind < 0.5 else (60, 60, 60) if kind < 0.7 else (40, 110, 50)
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
    return img


def render_frame(scene: Scene, t_s: float) -> tuple[np.ndarray, list[GroundTruthBox]]:
    """Renders the scene at ``t_s``: a BGR uint8 frame and the boxes of the visible objects."""
    frame = _background(scene.width, scene.height, scene.seed, scene.kerb_y).copy()
    owner = np.full((scene.height, scene.width), -1, np.int32)  # frontmost object per pixel
    drawn: list[tuple[int, SceneObject, tuple[float, float, float, float], int]] = []
    scene_size = (scene.width, scene.height)
    placed = [(i, o, st) for i, o in enumerate(scene.objects) if (st := o.state(t_s)) is not None]
    # Nearer objects (lower in the frame) are drawn last, so they occlude farther ones.
    placed.sort(key=lambda p: p[2][1] + p[1].box_size[1] / 2)
    for i, obj, (x, y, heading, dist) in placed:
        bw, bh = obj.box_size
        x0, y0 = math.floor(x - bw / 2) - 2, math.floor(y - bh / 2) - 2  # patch origin
        prims = _person(obj, dist) if obj.label == "person" else _car(obj)
        patch, mask = _draw(prims, (x - bw / 2 - x0, y - bh / 2 - y0), (bw, bh), heading < 0)
        rows, cols = np.nonzero(mask > 127)
        if rows.size == 0:
            continue
        fx0, fy0 = max(x0, 0), max(y0, 0)  # the part of the patch inside the frame
        fx1, fy1 = min(x0 + mask.shape[1], scene.width), min(y0 + mask.shape[0], scene.height)
        if fx1 > fx0 and fy1 > fy0:
            sub = np.s_[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
            alpha = mask[sub].astype(np.float32)[..., None] / 255
            # The patch is premultiplied by its anti-aliased alpha.
            region = frame[fy0:fy1, fx0:fx1] * (1 - alpha) + patch[sub]
            frame[fy0:fy1, fx0:fx1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
            owner[fy0:fy1, fx0:fx1][mask[sub] > 127] = i
        # The amodal box (the whole drawn object, hidden parts too), clipped to the frame.
        box = [x0 + cols.min(), y0 + rows.min(), x0 + cols.max() + 1, y0 + rows.max() + 1]
        x_min, y_min, x_max, y_max = (float(v) for v in np.clip(box, 0, [*scene_size, *scene_size]))
        drawn.append((i, obj, (x_min, y_min, x_max, y_max), rows.size))
    for occluder in scene.occluders:
        x0, y0, x1, y1 = occluder.xyxy
        frame[y0:y1, x0:x1] = occluder.colour
        owner[y0:y1, x0:x1] = -1
    counts = np.bincount(owner.ravel() + 1, minlength=len(scene.objects) + 1)[1:]
    return frame, [
        GroundTruthBox(i, o.label, o.class_id, xyxy)
        for i, o, xyxy, area in sorted(drawn, key=lambda d: d[0])
        if counts[i] >= MIN_VISIBLE * area
    ]
