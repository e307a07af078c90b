"""The Bonsai Shapes world: random scenes of flat shapes, their pictures and
their captions.

A scene is a background and a list of objects (shape, colour, centre,
radius).  Captions come from a small grammar with paraphrases; every caption
says what `bonsai-image eval shapes` checks (data/shapes/eval_prompts.json
lists the held-out prompts, which training never sees verbatim).

Everything here depends only on the numpy Generator passed in, so a seed
reproduces the data set.
"""
import json
import math
import os

import numpy as np
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
WORLD = json.load(open(os.path.join(HERE, "..", "shapes", "world.json")))
SIZE = WORLD["size"]
COLOURS = list(WORLD["colours"])
BACKGROUNDS = list(WORLD["backgrounds"])
SHAPES = WORLD["shapes"]
RELATIONS = WORLD["relations"]
SS = 4  # supersampling factor of the renderer (anti-aliased edges)

NUMBER_WORDS = {1: ["a", "one"], 2: ["two", "2"], 3: ["three", "3"],
                4: ["four", "4"]}
RELATION_WORDS = {
    "left of": ["to the left of", "left of", "on the left of"],
    "right of": ["to the right of", "right of", "on the right of"],
    "above": ["above", "over", "on top of"],
    "below": ["below", "under", "beneath"],
}


# ---- pictures ---------------------------------------------------------------

def shape_polygon(shape, cx, cy, r):
    """Vertices of a polygon shape (None for the circle), in pixels."""
    if shape == "square":
        h = 0.8 * r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h),
                (cx - h, cy + h)]
    if shape == "triangle":
        R = 1.15 * r
        return [(cx + R * math.sin(a), cy - R * math.cos(a))
                for a in (0, 2 * math.pi / 3, 4 * math.pi / 3)]
    if shape == "star":
        R = 1.25 * r
        pts = []
        for i in range(10):
            rad = R if i % 2 == 0 else 0.5 * R
            a = i * math.pi / 5
            pts.append((cx + rad * math.sin(a), cy - rad * math.cos(a)))
        return pts
    return None


def render(scene):
    """The scene as a uint8 array [SIZE, SIZE, 3]."""
    bg = tuple(WORLD["backgrounds"][scene["background"]])
    img = Image.new("RGB", (SIZE * SS, SIZE * SS), bg)
    d = ImageDraw.Draw(img)
    for o in scene["objects"]:
        col = tuple(WORLD["colours"][o["colour"]])
        cx, cy, r = o["x"] * SS, o["y"] * SS, o["r"] * SS
        poly = shape_polygon(o["shape"], cx, cy, r)
        if poly is None:
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col)
        else:
            d.polygon(poly, fill=col)
    img = img.resize((SIZE, SIZE), Image.BOX)
    return np.asarray(img, dtype=np.uint8)


# ---- scenes -----------------------------------------------------------------

def _apart(x, y, r, o):
    """Whether an object of radius r at (x, y) keeps clear of object o."""
    return math.hypot(x - o["x"], y - o["y"]) > 1.3 * (r + o["r"]) + 3


def _place(rng, objs, region, r):
    """A centre for a new object of radius r inside region (x0, y0, x1, y1)
    that keeps clear of objs, or None."""
    x0, y0, x1, y1 = region
    lo_x, hi_x = max(x0, r * 1.3 + 2), min(x1, SIZE - r * 1.3 - 2)
    lo_y, hi_y = max(y0, r * 1.3 + 2), min(y1, SIZE - r * 1.3 - 2)
    if lo_x > hi_x or lo_y > hi_y:
        return None
    for _ in range(60):
        x, y = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
        if all(_apart(x, y, r, o) for o in objs):
            return x, y
    return None


def _radius(rng, total):
    return float(rng.uniform(13, 20) if total <= 2 else rng.uniform(9, 14))


def _group_regions(relation):
    """Regions for the first and the second group of a relation."""
    h = SIZE / 2
    full = (0, 0, SIZE, SIZE)
    if relation == "left of":
        return (0, 0, h - 6, SIZE), (h + 6, 0, SIZE, SIZE)
    if relation == "right of":
        return (h + 6, 0, SIZE, SIZE), (0, 0, h - 6, SIZE)
    if relation == "above":
        return (0, 0, SIZE, h - 6), (0, h + 6, SIZE, SIZE)
    if relation == "below":
        return (0, h + 6, SIZE, SIZE), (0, 0, SIZE, h - 6)
    return full, full


def make_scene(rng, groups, relation, background):
    """Objects for groups [(count, colour, shape)], the first group placed
    `relation` the second (None: anywhere).  None when they do not fit."""
    total = sum(g[0] for g in groups)
    objs = []
    regions = _group_regions(relation)
    for gi, (count, colour, shape) in enumerate(groups):
        for _ in range(count):
            r = _radius(rng, total)
            p = _place(rng, objs, regions[min(gi, 1)], r)
            if p is None:
                return None
            objs.append({"shape": shape, "colour": colour, "x": p[0],
                         "y": p[1], "r": r})
    return {"background": background, "objects": objs}


# Tidy layouts: each group in an arrangement of its own around a fixed centre
# (a row or a column, four as a square), with a few pixels of jitter.  Free
# placement makes the picture a caption asks for so many-valued that a small
# model's 4-step sample is the blur of them all; a tidy one is nearly one
# picture per caption and background, which a small model can learn.
TIDY_CENTRES = {  # relation -> (centre of group 1, of group 2, groups in a row?)
    "left of": ((32, 64), (96, 64), False),
    "right of": ((96, 64), (32, 64), False),
    "above": ((64, 32), (64, 96), True),
    "below": ((64, 96), (64, 32), True),
    None: ((36, 64), (92, 64), False),
}


def _arrangement(n, r, in_row):
    """Offsets of n objects of radius r from their group's centre."""
    d = 2.6 * r + 6  # centre to centre: apart by _apart's margin
    if n == 4:
        return [(-d / 2, -d / 2), (d / 2, -d / 2), (-d / 2, d / 2), (d / 2, d / 2)]
    offs = [(i - (n - 1) / 2) * d for i in range(n)]
    return [(o, 0.0) if in_row else (0.0, o) for o in offs]


def _fits(objs):
    """Whether every object is inside the picture and clear of the others."""
    for i, o in enumerate(objs):
        m = o["r"] * 1.3 + 2  # _place's margin to the edge
        if not (m <= o["x"] <= SIZE - m and m <= o["y"] <= SIZE - m):
            return False
        if not all(_apart(o["x"], o["y"], o["r"], p) for p in objs[:i]):
            return False
    return True


def make_tidy_scene(rng, groups, relation, background):
    """As make_scene, with the groups in tidy layouts (TIDY_CENTRES)."""
    total = sum(g[0] for g in groups)
    r = float(rng.uniform(14, 17) if total <= 2 else rng.uniform(10, 12.5))
    if len(groups) == 1:
        centres, in_row = [(64, 64)], True
    else:
        c1, c2, in_row = TIDY_CENTRES[relation]
        centres = [c1, c2]
    objs = []
    for (count, colour, shape), (gx, gy) in zip(groups, centres):
        gx += rng.uniform(-5, 5)
        gy += rng.uniform(-5, 5)
        for dx, dy in _arrangement(count, r, in_row):
            objs.append({"shape": shape, "colour": colour,
                         "x": gx + dx + rng.uniform(-2, 2),
                         "y": gy + dy + rng.uniform(-2, 2), "r": r})
    return {"background": background, "objects": objs} if _fits(objs) else None


# ---- captions ---------------------------------------------------------------

def phrase(rng, count, colour, shape):
    words = NUMBER_WORDS[count]
    n = words[rng.integers(len(words))]
    if count == 1 and colour == "orange" and n == "a":
        n = "an"
    return f"{n} {colour} {shape}{'s' if count > 1 else ''}"


def canonical_phrase(count, colour, shape):
    n = {1: "an" if colour == "orange" else "a", 2: "two", 3: "three",
         4: "four"}[count]
    return f"{n} {colour} {shape}{'s' if count > 1 else ''}"


def caption(rng, groups, relation, background):
    """A paraphrase of what the scene holds."""
    a = phrase(rng, *groups[0])
    if len(groups) == 1:
        body = a
    elif relation is None:
        join = [" and ", " with ", ", "][rng.integers(3)]
        body = a + join + phrase(rng, *groups[1])
    else:
        words = RELATION_WORDS[relation]
        body = f"{a} {words[rng.integers(len(words))]} {phrase(rng, *groups[1])}"
    form = rng.integers(6)
    if form == 1:
        body = "a picture of " + body
    elif form == 2:
        body = "an image with " + body
    if rng.random() < 0.4:
        body += f" on a {background} background"
    if rng.random() < 0.2:
        body = body[0].upper() + body[1:]
    return body


def canonical_caption(groups, relation):
    """The held-out form used by data/shapes/eval_prompts.json."""
    a = canonical_phrase(*groups[0])
    if len(groups) == 1:
        return a
    b = canonical_phrase(*groups[1])
    if relation is None:
        return f"{a} and {b}"
    return f"{a} {RELATION_WORDS[relation][0]} {b}"


def _distinct_pair(rng):
    c1, c2 = rng.choice(len(COLOURS), 2, replace=False)
    s1, s2 = rng.integers(len(SHAPES), size=2)
    return COLOURS[c1], SHAPES[s1], COLOURS[c2], SHAPES[s2]


def sample(rng, held_out=frozenset()):
    """(scene, caption, spec) where spec is the groups and relation."""
    while True:
        kind = rng.choice(["single", "count", "pair", "relation"],
                          p=[0.15, 0.25, 0.25, 0.35])
        background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
        relation = None
        if kind in ("single", "count"):
            n = 1 if kind == "single" else int(rng.integers(2, 5))
            groups = [(n, COLOURS[rng.integers(len(COLOURS))],
                       SHAPES[rng.integers(len(SHAPES))])]
        else:
            c1, s1, c2, s2 = _distinct_pair(rng)
            n1, n2 = (int(x) for x in rng.integers(1, 3, size=2))
            groups = [(n1, c1, s1), (n2, c2, s2)]
            if kind == "relation":
                relation = RELATIONS[rng.integers(len(RELATIONS))]
        if canonical_caption(groups, relation) in held_out:
            continue
        scene = make_scene(rng, groups, relation, background)
        if scene is None:
            continue
        return scene, caption(rng, groups, relation, background), \
            {"groups": groups, "relation": relation}


def load_held_out():
    path = os.path.join(HERE, "..", "shapes", "eval_prompts.json")
    if not os.path.exists(path):
        return frozenset()
    return frozenset(p["prompt"] for p in json.load(open(path))["prompts"])
