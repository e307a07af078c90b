"""Checks klein_torch.py against the reference vectors diffusers computed
(../shared/refs/flux2-mini): the training recipe must compute the very model
the engine runs.  Usage: check_refs.py [REFS_DIR]"""
import json
import os
import sys

import numpy as np
import torch

import klein_torch as K


def rel(a, b):
    return float(np.abs(a - b).max() / max(1.0, np.abs(b).max()))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    refs = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "..", "shared", "refs")
    d = os.path.join(refs, "flux2-mini")
    worst = 0.0
    torch.set_grad_enabled(False)

    dit = K.Flux2Transformer(json.load(open(os.path.join(d, "dit_config.json"))))
    K.load_numpy_state(dit, K.load_safetensors(os.path.join(d, "dit_weights.safetensors")))
    io = K.load_safetensors(os.path.join(d, "dit_io.safetensors"))
    T = lambda a: torch.from_numpy(a)[None]
    for i, sigma in enumerate((1.0, 0.6875, 0.25)):
        out = dit(T(io["x"]), T(io["img_ids"]), torch.tensor([sigma]), T(io["ctx"]), T(io["txt_ids"]))
        r = rel(out[0].numpy(), io[f"out_t{i}"])
        print(f"dit sigma {sigma}: max rel {r:.2e}")
        worst = max(worst, r)
    x = torch.cat([T(io["x"]), T(io["x_ref"])], 1)
    ids = torch.cat([T(io["img_ids"]), T(io["ref_ids"])], 1)
    t_edit = float(io["t_edit"].reshape(-1)[0]) if "t_edit" in io else 0.5
    out = dit(x, ids, torch.tensor([t_edit]), T(io["ctx"]), T(io["txt_ids"]))
    r = rel(out[0].numpy(), io["out_edit"])
    print(f"dit edit: max rel {r:.2e}")
    worst = max(worst, r)

    vae = K.AutoencoderKLFlux2(json.load(open(os.path.join(d, "vae_config.json"))))
    K.load_numpy_state(vae, K.load_safetensors(os.path.join(d, "vae_weights.safetensors")))
    io = K.load_safetensors(os.path.join(d, "vae_io.safetensors"))
    mean, _ = vae.encode(T(io["image"]))
    for name, got in (("latent_mean", mean[0]),
                      ("decoded_from_mean", vae.decode(T(io["latent_mean"]))[0]),
                      ("decoded_z", vae.decode(T(io["z"]))[0])):
        r = rel(got.numpy(), io[name])
        print(f"vae {name}: max rel {r:.2e}")
        worst = max(worst, r)
    ok = worst <= 1e-4
    print("PASS" if ok else "FAIL", f"(worst {worst:.2e}, tolerance 1e-4)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
