"""Trains the Bonsai Shapes autoencoder (AutoencoderKLFlux2 structure, 8×
down-sampling, 8 latent channels) on rendered scenes, then measures the
batch-norm statistics of its patchified latents that the pipeline uses.
Usage: train_vae.py OUT_DIR [--minutes M] [--seed S]"""
import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

import klein_torch as K
import shapes_config
import shapes_world as W


def batch(rng, n, held_out, crop=None):
    imgs = np.stack([W.render(W.sample(rng, held_out)[0]) for _ in range(n)])
    # Shapes cover a few percent of the picture: weigh their pixels up, or
    # the loss is all background and shape colours are learnt last.  The
    # corner pixel is always background (objects keep off the edges).
    fg = (np.abs(imgs.astype(np.int16) - imgs[:, :1, :1].astype(np.int16)).max(-1) > 8)
    weight = 1 + 9 * fg.astype(np.float32)
    if crop:
        # Crops on the 8-pixel latent grid: the network is convolutional, and
        # a quarter of the pixels costs a quarter of the time.
        y, x = (int(v) * 8 for v in rng.integers(0, (W.SIZE - crop) // 8 + 1, size=2))
        imgs = imgs[:, y:y + crop, x:x + crop]
        weight = weight[:, y:y + crop, x:x + crop]
    x = torch.from_numpy(np.ascontiguousarray(imgs)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return x, torch.from_numpy(np.ascontiguousarray(weight))[:, None]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=0,
                    help="stop after this many steps (0: when the minutes are up)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--init", default=None, help="go on from this vae.safetensors")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--decoder-only", action="store_true",
                    help="train the decoder alone (keeps the latent space, and so a "
                         "transformer trained on it, and the batch-norm statistics)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(a.seed)
    held = W.load_held_out()
    vae = K.AutoencoderKLFlux2(shapes_config.VAE)
    if a.init:
        K.load_numpy_state(vae, K.load_safetensors(a.init))
    params = vae.decoder.parameters() if a.decoder_only else vae.parameters()
    if a.decoder_only:
        for p in list(vae.encoder.parameters()) + list(vae.quant_conv.parameters()):
            p.requires_grad_(False)
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
    t_end = time.time() + a.minutes * 60
    step = 0
    while (step < a.steps) if a.steps else (time.time() < t_end):
        x, wt = batch(rng, a.batch, held, a.crop)
        # Trained as a plain autoencoder on the mean (the pipeline never
        # samples the posterior); a small penalty keeps the latents bounded.
        with torch.autocast("cpu", dtype=torch.bfloat16):
            with torch.set_grad_enabled(not a.decoder_only):
                mean, _ = vae.encode(x)
            y = vae.decode(mean.detach() if a.decoder_only else mean).float()
        kl = mean.float().pow(2).mean()
        err = (y - x).abs()
        loss = ((err + err * err) * wt).mean() / wt.mean() + 1e-4 * kl
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 5.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.4f} |z|² {kl.item():.2f}", flush=True)
    # The pipeline normalises patchified latents with the batch-norm running
    # statistics; measure them on fresh scenes with the encoder mean.
    vae.eval()
    if not a.decoder_only:
        with torch.no_grad():
            zs = torch.cat([K.patchify(vae.encode(batch(rng, 32, held)[0])[0])
                            for _ in range(16)])
        vae.bn.running_mean.copy_(zs.mean((0, 2, 3)))
        vae.bn.running_var.copy_(zs.var((0, 2, 3)))
        vae.bn.num_batches_tracked.fill_(1)
    with torch.no_grad():
        x = batch(rng, 32, held)[0]
        y = vae.decode(vae.encode(x)[0]).clamp(-1, 1)
        psnr = 10 * np.log10(4 / F.mse_loss(y, x).item())
    print(f"done: {step} steps, reconstruction PSNR {psnr:.1f} dB")
    K.save_safetensors(os.path.join(a.out, "vae.safetensors"), K.state_to_numpy(vae))
    json.dump(shapes_config.VAE, open(os.path.join(a.out, "vae_config.json"), "w"), indent=1)
    json.dump({"steps": step, "psnr_db": round(psnr, 2), "seed": a.seed, "init": a.init},
              open(os.path.join(a.out, "vae_train.json"), "w"))


if __name__ == "__main__":
    main()
