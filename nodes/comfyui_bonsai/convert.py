"""ComfyUI's data types and the engine's, both ways.

IMAGE         torch.float32 [B, H, W, 3] in 0..1 (one array per image goes to
              the engine, written or read in place through .numpy())
LATENT        {"samples": torch.float32 [B, 128, H/16, W/16]}: the layout of
              ComfyUI's FLUX.2 latents (comfy/latent_formats.py Flux2: 128
              channels, 16 pixels a latent pixel; the VAE's 32 channels
              patchified 2×2 as channel c·4 + dy·2 + dx and batch-norm
              normalised), which is also what the engine samples in, so
              ComfyUI's own VAE Decode and VAE Encode work with these latents
CONDITIONING  [[torch.float32 [1, L, D], {"pooled_output": None}]], as
              ComfyUI's text encoders give; D is 7680 for klein
"""

import numpy
import torch


def _node_error(node, message):
    return TypeError(f"{node}: {message}")


def _cpu_float(tensor):
    return tensor.detach().to(device="cpu", dtype=torch.float32).contiguous()


def image_list(image, node, what):
    """An IMAGE batch as a list of C-contiguous float32 [H, W, 3] numpy arrays
    (views when the tensor already is such; an alpha channel is dropped)."""
    if not isinstance(image, torch.Tensor):
        raise _node_error(node, f"{what} must be an IMAGE (a torch tensor [B, H, W, 3]), "
                                f"not {type(image).__name__}")
    if image.dim() == 3:  # a single image without its batch dimension
        image = image.unsqueeze(0)
    if image.dim() != 4 or image.shape[-1] not in (3, 4) or not image.is_floating_point():
        raise _node_error(node, f"{what} must be an IMAGE: float [B, H, W, 3] in 0..1, "
                                f"not {image.dtype} {list(image.shape)}")
    image = _cpu_float(image[..., :3])
    return [image[b].numpy() for b in range(image.shape[0])]


def features_of(conditioning, node):
    """The prompt features [L, D] (float32 numpy, C-contiguous) of the first
    entry of a CONDITIONING."""
    ok = (isinstance(conditioning, (list, tuple)) and len(conditioning) > 0
          and isinstance(conditioning[0], (list, tuple)) and len(conditioning[0]) >= 1
          and isinstance(conditioning[0][0], torch.Tensor))
    if not ok:
        raise _node_error(node, "conditioning must be a CONDITIONING "
                                "([[tensor [1, L, D], {...}]], as Bonsai Text Encode gives), "
                                f"not {type(conditioning).__name__}")
    cond = conditioning[0][0]
    if cond.dim() == 3:
        cond = cond[0]
    if cond.dim() != 2:
        raise _node_error(node, f"the conditioning tensor must be [1, L, D], not {list(cond.shape)}")
    return _cpu_float(cond).numpy()


def conditioning_of(features):
    """Engine features (a _bonsai.Tensor [L, D]) as CONDITIONING, sharing
    their memory."""
    cond = torch.from_numpy(numpy.asarray(features)).unsqueeze(0)
    return [[cond, {"pooled_output": None}]]


def latent_of(samples):
    """Engine latents (a list of _bonsai.Tensor [C, h, w]) as a LATENT."""
    return {"samples": torch.stack([torch.from_numpy(numpy.asarray(s)) for s in samples])}


def latent_list(latent, node):
    """A LATENT as a list of C-contiguous float32 [C, h, w] numpy arrays."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not isinstance(samples, torch.Tensor) or samples.dim() != 4:
        raise _node_error(node, "samples must be a LATENT ({'samples': tensor [B, C, H/16, W/16]}), "
                                f"not {type(latent).__name__}")
    samples = _cpu_float(samples)
    return [samples[b].numpy() for b in range(samples.shape[0])]


def new_images(count, height, width):
    """An IMAGE batch for the engine to write into."""
    return torch.empty((count, height, width, 3), dtype=torch.float32)
