"""Draws the caption pool the transformer trains on: OUT/captions.txt (one
per line, for `bonsai-image encode-prompt --prompts`) and OUT/specs.json
(what each caption asks for, so that training can render a fresh scene of
it every time).  Usage: make_captions.py OUT_DIR [--n N] [--seed S]"""
import argparse
import json
import os

import numpy as np

import shapes_world as W


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=16000)
    ap.add_argument("--seed", type=int, default=2)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    held = W.load_held_out()
    caps, specs = [], []
    for _ in range(a.n):
        scene, cap, spec = W.sample(rng, held)
        caps.append(cap)
        specs.append({"groups": spec["groups"], "relation": spec["relation"],
                      "background": scene["background"]})
    with open(os.path.join(a.out, "captions.txt"), "w") as f:
        f.write("\n".join(caps) + "\n")
    json.dump(specs, open(os.path.join(a.out, "specs.json"), "w"))
    print(f"{len(caps)} captions, {len(set(caps))} distinct")


if __name__ == "__main__":
    main()
