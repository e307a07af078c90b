"""Samples the trained transformer in torch with the pipeline's 4-step
schedule and writes a grid of pictures, to look at while training (the
engine's own `bonsai-image eval shapes` is the measurement).
Usage: preview.py CKPT DATA OUT.png [--weights NAME] [--bits B] [--n 16]"""
import argparse
import os

import numpy as np
import torch
from PIL import Image

import klein_torch as K
import shapes_config
from train_dit import Data, ids, klein_sigmas


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--weights", default="transformer")
    ap.add_argument("--bits", type=int, default=0)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--steps", type=int, default=4)
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    data = Data(a.ckpt, a.data, 7)
    model = K.Flux2Transformer(shapes_config.TRANSFORMER)
    K.load_numpy_state(model, K.load_safetensors(os.path.join(a.ckpt, a.weights + ".safetensors")))
    model.set_bits(a.bits)
    caps = open(os.path.join(a.data, "captions.txt")).read().split("\n")
    idx = np.arange(a.n) * 97 % len(data.specs)
    ctx = torch.from_numpy(data.feats[idx].astype(np.float32))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.n, 64, 32, generator=g)
    img_ids, txt_ids = ids(8, a.n)
    s = klein_sigmas(64, a.steps)
    for i in range(a.steps):
        v = model(x, img_ids, torch.full((a.n,), float(s[i])), ctx, txt_ids)
        x = x + (s[i + 1] - s[i]) * v
    z = x.transpose(1, 2).reshape(a.n, 32, 8, 8) * data.std + data.mean
    im = data.vae.decode(K.unpatchify(z)).clamp(-1, 1)
    im = ((im + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    cols = 4
    rows = (a.n + cols - 1) // cols
    grid = np.zeros((rows * 128, cols * 128, 3), np.uint8)
    for i in range(a.n):
        grid[i // cols * 128:(i // cols + 1) * 128, i % cols * 128:(i % cols + 1) * 128] = im[i]
    Image.fromarray(grid).save(a.out)
    for i in range(a.n):
        print(i, caps[idx[i]])


if __name__ == "__main__":
    main()
