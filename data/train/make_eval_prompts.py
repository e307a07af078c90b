"""Writes data/shapes/eval_prompts.json: the held-out prompts of the mini
GenEval, 12 per category, drawn with a fixed seed.  Training never sees these
exact captions (shapes_world.sample skips them)."""
import json
import os

import numpy as np

import shapes_world as W


def main():
    rng = np.random.default_rng(20261124)
    out, seen = [], set()

    def add(category, groups, relation):
        p = W.canonical_caption(groups, relation)
        if p in seen:
            return False
        seen.add(p)
        out.append({"category": category, "prompt": p, "relation": relation,
                    "objects": [{"count": n, "colour": c, "shape": s}
                                for n, c, s in groups]})
        return True

    def colour():
        return W.COLOURS[rng.integers(len(W.COLOURS))]

    def shape():
        return W.SHAPES[rng.integers(len(W.SHAPES))]

    for category in ("single", "counting", "colours", "position"):
        n = 0
        while n < 12:
            if category == "single":
                ok = add(category, [(1, colour(), shape())], None)
            elif category == "counting":
                ok = add(category, [(int(rng.integers(2, 5)), colour(), shape())], None)
            else:
                c1, s1, c2, s2 = W._distinct_pair(rng)
                rel = None if category == "colours" else \
                    W.RELATIONS[rng.integers(len(W.RELATIONS))]
                counts = (1, 1) if category == "colours" else \
                    tuple(int(x) for x in rng.integers(1, 3, size=2))
                ok = add(category, [(counts[0], c1, s1), (counts[1], c2, s2)], rel)
            n += ok
    path = os.path.join(W.HERE, "..", "shapes", "eval_prompts.json")
    with open(path, "w") as f:
        json.dump({"comment": "Held-out prompts of `bonsai-image eval shapes`; "
                   "written by data/train/make_eval_prompts.py",
                   "prompts": out}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
