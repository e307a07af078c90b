"""Fixtures of the mini-GenEval scorer (tests/test-shapes-eval.c).

Renders, with the Shapes world itself, for 16 of the held-out prompts a
scene that satisfies it and scenes that must not (wrong count, colour,
shape, swapped relation, an extra object), some of them degraded the way
generated images are (Gaussian noise, a colour shift, a slight blur), and
single shapes of each kind at radii 9..20 for the shape classifier.
Writes tests/data/shapes/*.png and expected.json (the prompts, and the
verdict each picture must get).

    /usr/bin/python3 data/train/render_fixtures.py [OUT_DIR [SEED]]

(another seed makes a fresh set to stress the scorer with; the committed
one is seed 2024).
"""
import json
import os
import sys

import numpy as np
from PIL import Image, ImageFilter

import shapes_world as W

HERE = os.path.dirname(os.path.abspath(__file__))
OPPOSITE = {"left of": "right of", "right of": "left of",
            "above": "below", "below": "above"}


def scene_for(rng, groups, relation, background):
    for _ in range(200):
        s = W.make_scene(rng, groups, relation, background)
        if s is not None:
            return s
    raise RuntimeError(f"no room for {groups} {relation}")


def degrade(img, kind, rng):
    """What a generator gets slightly wrong: grain, tint, softness."""
    a = img.astype(np.float32)
    if kind == "noise":
        a += rng.normal(0, 8, a.shape)
    elif kind == "shift":
        a += rng.uniform(-25, 25, 3)[None, None, :]
    elif kind == "blur":
        im = Image.fromarray(img).filter(ImageFilter.GaussianBlur(0.7))
        a = np.asarray(im, dtype=np.float32)
    elif kind == "all":
        im = Image.fromarray(img).filter(ImageFilter.GaussianBlur(0.6))
        a = np.asarray(im, dtype=np.float32)
        a += rng.uniform(-20, 20, 3)[None, None, :] + rng.normal(0, 6, a.shape)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def other(values, exclude, rng):
    left = [v for v in values if v not in exclude]
    return left[rng.integers(len(left))]


def negatives(rng, groups, relation):
    """(case, groups, relation) of scenes the prompt must reject."""
    out = []
    n, c, s = groups[0]
    out.append(("wrong count", [(n + 1 if n < 4 else n - 1, c, s)] + groups[1:],
                relation))
    used = [g[1] for g in groups]
    out.append(("wrong colour", [(n, other(W.COLOURS, used, rng), s)] + groups[1:],
                relation))
    out.append(("wrong shape", [(n, c, other(W.SHAPES, [s], rng))] + groups[1:],
                relation))
    if relation:
        out.append(("swapped relation", groups, OPPOSITE[relation]))
    if sum(g[0] for g in groups) < 4:
        extra = (1, other(W.COLOURS, used, rng), W.SHAPES[rng.integers(4)])
        out.append(("extra object", groups + [extra], relation))
    return out


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        HERE, "..", "..", "tests", "data", "shapes")
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(int(sys.argv[2]) if len(sys.argv) > 2 else 2024)
    prompts = json.load(open(os.path.join(HERE, "..", "shapes",
                                          "eval_prompts.json")))["prompts"]
    by_cat = {}
    for p in prompts:
        by_cat.setdefault(p["category"], []).append(p)
    chosen = [p for ps in by_cat.values() for p in ps[::3][:4]]
    images = []

    def save(name, img, prompt, correct, case):
        Image.fromarray(img).save(os.path.join(out_dir, name), optimize=True)
        images.append({"file": name, "prompt": prompt, "correct": correct,
                       "case": case})

    for i, p in enumerate(chosen):
        groups = [(o["count"], o["colour"], o["shape"]) for o in p["objects"]]
        rel = p["relation"]
        bg = W.BACKGROUNDS[i % len(W.BACKGROUNDS)]
        good = W.render(scene_for(rng, groups, rel, bg))
        save(f"p{i:02d}-correct.png", good, i, True, "correct")
        for case, g, r in negatives(rng, groups, rel):
            img = W.render(scene_for(rng, g, r, bg))
            save(f"p{i:02d}-{case.replace(' ', '-')}.png", img, i, False, case)
        kind = ["noise", "shift", "blur", "all"][i % 4]
        save(f"p{i:02d}-correct-{kind}.png", degrade(good, kind, rng), i, True,
             "correct, " + kind)
        if i % 2 == 0:
            case, g, r = negatives(rng, groups, rel)[0]
            img = W.render(scene_for(rng, g, r, bg))
            save(f"p{i:02d}-{case.replace(' ', '-')}-{kind}.png",
                 degrade(img, kind, rng), i, False, case + ", " + kind)

    singles = []
    for shape in W.SHAPES:
        for r in range(9, 21):
            bg = W.BACKGROUNDS[r % len(W.BACKGROUNDS)]
            colour = W.COLOURS[(r + len(shape)) % len(W.COLOURS)]
            x, y = rng.uniform(40, 88, 2)
            scene = {"background": bg, "objects": [
                {"shape": shape, "colour": colour, "x": x, "y": y, "r": r}]}
            name = f"single-{shape}-r{r}.png"
            Image.fromarray(W.render(scene)).save(os.path.join(out_dir, name),
                                                  optimize=True)
            singles.append({"file": name, "shape": shape, "colour": colour})

    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump({"comment": "Written by data/train/render_fixtures.py; "
                              "tests/test-shapes-eval.c checks every verdict.",
                   "prompts": chosen, "images": images, "singles": singles},
                  f, indent=1)
        f.write("\n")
    print(f"{len(images)} scenes and {len(singles)} single shapes in {out_dir}")


if __name__ == "__main__":
    main()
