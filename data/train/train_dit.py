"""Trains the Bonsai Shapes transformer by rectified flow, tuned for the
4-step klein schedule, and fine-tunes it to binary or ternary weights
(quantization-aware, straight-through estimator).

  train_dit.py CKPT DATA --minutes M                 full precision
  train_dit.py CKPT DATA --minutes M --bits 1|2 --init CKPT/transformer.safetensors --out NAME
  ... --bits 1|2 --teacher CKPT/transformer_fp.safetensors     distilled from the FP model

CKPT holds vae.safetensors (train_vae.py); DATA holds specs.json
(make_captions.py) and features.safetensors (`bonsai-image encode-prompt
--prompts DATA/captions.txt` with the shapes text encoder).  Each step
renders fresh scenes of the captions drawn, so positions never repeat.
"""
import argparse
import copy
import json
import math
import os
import time

import numpy as np
import torch

import klein_torch as K
import shapes_config
import shapes_world as W

L_TXT = 512


def klein_sigmas(n_tokens, steps):
    """The pipeline's schedule (research spec §5.1), final 0 included."""
    a1, b1, a2, b2 = 8.73809524e-05, 1.89833333, 0.00016927, 0.45666666
    m200, m10 = a2 * n_tokens + b2, a1 * n_tokens + b1
    a = (m200 - m10) / 190
    mu = a * steps + (m200 - 200 * a)
    t = np.linspace(1, 0, steps + 1)[:-1]
    s = math.exp(mu) / (math.exp(mu) + (1 / t - 1))
    return np.append(s, 0.0)


def ids(n_side, batch):
    r, c = np.meshgrid(np.arange(n_side), np.arange(n_side), indexing="ij")
    img = np.zeros((n_side * n_side, 4), np.float32)
    img[:, 1], img[:, 2] = r.ravel(), c.ravel()
    txt = np.zeros((L_TXT, 4), np.float32)
    txt[:, 3] = np.arange(L_TXT)
    return (torch.from_numpy(img)[None].expand(batch, -1, -1),
            torch.from_numpy(txt)[None].expand(batch, -1, -1))


class Data:
    def __init__(self, ckpt, data, seed, layout="tidy", plain=None):
        self.specs = json.load(open(os.path.join(data, "specs.json")))
        feats = K.load_safetensors(os.path.join(data, "features.safetensors"))["features"]
        assert feats.shape[0] == len(self.specs) and feats.shape[1] == L_TXT, feats.shape
        self.feats = feats  # float16 [n, 512, 96]
        self.vae = K.AutoencoderKLFlux2(shapes_config.VAE)
        K.load_numpy_state(self.vae, K.load_safetensors(os.path.join(ckpt, "vae.safetensors")))
        self.vae.eval()
        bn = self.vae.bn
        self.mean = bn.running_mean.view(1, -1, 1, 1)
        self.std = torch.sqrt(bn.running_var + shapes_config.VAE["batch_norm_eps"]).view(1, -1, 1, 1)
        self.rng = np.random.default_rng(seed)
        self.make = W.make_tidy_scene if layout == "tidy" else W.make_scene
        self.backgrounds = [s["background"] for s in self.specs]
        # A caption that names no background gets `plain`: left free, the
        # background is one more choice the 4-step sample blurs.
        if plain:
            caps = open(os.path.join(data, "captions.txt")).read().split("\n")
            self.backgrounds = [b if "background" in c else plain
                                for b, c in zip(self.backgrounds, caps)]

    def scene(self, i):
        spec = self.specs[i]
        groups = [tuple(g) for g in spec["groups"]]
        while True:
            s = self.make(self.rng, groups, spec["relation"], self.backgrounds[i])
            if s is not None:
                return s

    def batch(self, n):
        idx = self.rng.integers(len(self.specs), size=n)
        imgs = np.stack([W.render(self.scene(i)) for i in idx])
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            z = self.vae.encode(x)[0].float()
        z = (K.patchify(z) - self.mean) / self.std           # [n, 32, 8, 8]
        tokens = z.flatten(2).transpose(1, 2).contiguous()    # [n, 64, 32]
        ctx = torch.from_numpy(self.feats[idx].astype(np.float32))
        return tokens, ctx


def sample_sigmas(rng, n, schedule):
    """Half at the 4-step schedule's own points, half logit-normal shifted
    like the schedule, so that the model is best where it is used."""
    s = np.empty(n, np.float32)
    on = rng.random(n) < 0.5
    s[on] = rng.choice(schedule[:-1], size=int(on.sum()))
    u = 1 / (1 + np.exp(-rng.normal(0, 1, size=int((~on).sum()))))
    e = math.exp(1.95)
    s[~on] = e * u / (e * u + (1 - u))
    return torch.from_numpy(s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("data")
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--bits", type=int, default=0, choices=(0, 1, 2))
    ap.add_argument("--init", default=None)
    ap.add_argument("--out", default="transformer")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=0,
                    help="stop after this many steps (0: when the minutes are up)")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--short-text", type=int, default=0,
                    help="most steps see only the first N text positions (every caption fits "
                         "in 32 tokens); 0: always all 512")
    ap.add_argument("--full-frac", type=float, default=0.15,
                    help="with --short-text, the fraction of steps that see all 512")
    ap.add_argument("--reuse", type=int, default=1,
                    help="steps per rendered batch, each with fresh noise and sigmas "
                         "(rendering and encoding cost as much as a small model's step)")
    ap.add_argument("--layout", choices=("tidy", "free"), default="tidy",
                    help="scene layouts (shapes_world.make_tidy_scene or make_scene); "
                         "rounds 1 and 2 were free")
    ap.add_argument("--plain-background", default=None, metavar="NAME",
                    help="scenes whose caption names no background get this one")
    ap.add_argument("--ema", type=float, default=0.0,
                    help="save an exponential moving average of the weights with this "
                         "decay (0: the last weights)")
    ap.add_argument("--teacher", default=None, metavar="SAFETENSORS",
                    help="learn the velocity this full-precision transformer predicts "
                         "for the same input instead of the flow target (distillation)")
    ap.add_argument("--save-every", type=int, default=0,
                    help="also save the weights every N steps, to sample while training")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    data = Data(a.ckpt, a.data, a.seed, a.layout, a.plain_background)
    model = K.Flux2Transformer(shapes_config.TRANSFORMER)
    if a.init:
        K.load_numpy_state(model, K.load_safetensors(a.init))
    else:
        # Zero the output projection: the first prediction is then exactly 0.
        torch.nn.init.zeros_(model.proj_out.weight)
    model.set_bits(a.bits)
    # The flow target is the noise minus the picture: its loss floor (the
    # picture a noisy latent could still become) hides the small gap between
    # a quantized student and its teacher.  The teacher's own prediction has
    # no floor, so every step's gradient is about that gap.
    teacher = None
    if a.teacher:
        teacher = K.Flux2Transformer(shapes_config.TRANSFORMER)
        K.load_numpy_state(teacher, K.load_safetensors(a.teacher))
        teacher.requires_grad_(False)
    # The average of the weights along the last few thousand steps samples
    # better than the last weights, which carry the last batches' noise.
    avg = copy.deepcopy(model) if a.ema else None
    lr = a.lr = a.lr or (1e-3 if a.bits == 0 and not a.init else 3e-4)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.99))
    schedule = klein_sigmas(64, 4)
    img_ids, txt_ids = ids(8, a.batch)
    t_end = time.time() + a.minutes * 60
    t0, step, ema, ema_full, ema_gap = time.time(), 0, None, None, None
    warm = 200
    while (step < a.steps) if a.steps else (time.time() < t_end):
        if step % a.reuse == 0:
            x0, ctx = data.batch(a.batch)
        # The pipeline always feeds 512 positions, mostly padding; the text
        # stream then costs 9x the image's.  Steps on the captions' own tokens
        # learn the conditioning 9x cheaper; the full-length steps keep the
        # model used to the padding it will see.
        n_txt = L_TXT
        if a.short_text and data.rng.random() >= a.full_frac:
            n_txt = a.short_text
        sigma = sample_sigmas(data.rng, a.batch, schedule)
        noise = torch.randn_like(x0)
        s = sigma.view(-1, 1, 1)
        xt = (1 - s) * x0 + s * noise
        frac = min(1.0, (step + 1) / warm)
        left = (1 - step / a.steps) if a.steps else \
            max(0.0, (t_end - time.time()) / (a.minutes * 60))
        for g in opt.param_groups:  # warm-up, then cosine to a tenth
            g["lr"] = lr * frac * (0.1 + 0.9 * 0.5 * (1 - math.cos(math.pi * left)))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            v = model(xt, img_ids, sigma, ctx[:, :n_txt], txt_ids[:, :n_txt]).float()
            if teacher is not None:
                with torch.no_grad():
                    v_t = teacher(xt, img_ids, sigma, ctx[:, :n_txt], txt_ids[:, :n_txt]).float()
        loss = (v - (noise - x0)).pow(2).mean()
        gap = (v - v_t).pow(2).mean() if teacher is not None else None
        opt.zero_grad()
        (gap if gap is not None else loss).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if avg is not None:
            d = min(a.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                for pa, pm in zip(avg.parameters(), model.parameters()):
                    pa.mul_(d).add_(pm.detach(), alpha=1 - d)
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if gap is not None:
            ema_gap = gap.item() if ema_gap is None else 0.98 * ema_gap + 0.02 * gap.item()
        if a.save_every and step % a.save_every == 0:
            save(avg or model, a, step, ema)
        if n_txt == L_TXT:
            ema_full = loss.item() if ema_full is None else 0.9 * ema_full + 0.1 * loss.item()
        if step % 50 == 0:
            full = f" (512: {ema_full:.4f})" if a.short_text and ema_full else ""
            full += f" to teacher {ema_gap:.4f}" if ema_gap is not None else ""
            print(f"step {step} loss {ema:.4f}{full} lr {opt.param_groups[0]['lr']:.2e} "
                  f"{(time.time() - t0) / step:.2f} s/step", flush=True)
    save(avg or model, a, step, ema)
    print(f"done: {step} steps, loss {ema:.4f}")


def save(model, a, step, loss):
    arrays = K.state_to_numpy(model)
    # The latent float weights: export-release applies the same rule as
    # QuantLinear when it packs them (re-quantizing already ternary weights
    # would change their scales).
    K.save_safetensors(os.path.join(a.ckpt, a.out + ".safetensors"), arrays)
    cfg = dict(shapes_config.TRANSFORMER)
    json.dump(cfg, open(os.path.join(a.ckpt, a.out + "_config.json"), "w"), indent=1)
    json.dump({"steps": step, "loss": loss, "bits": a.bits, "seed": a.seed,
               "lr": a.lr, "batch": a.batch, "minutes": a.minutes, "init": a.init,
               "short_text": a.short_text, "full_frac": a.full_frac,
               "reuse": a.reuse, "layout": a.layout, "ema": a.ema,
               "plain_background": a.plain_background, "teacher": a.teacher},
              open(os.path.join(a.ckpt, a.out + "_train.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
