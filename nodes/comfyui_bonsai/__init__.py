"""Bonsai Image for ComfyUI: FLUX.2 [klein] 4B with 1-bit and ternary weights,
run on the CPU by libbonsai.

Nodes (category "Bonsai Image"): Load Bonsai Model, Bonsai Text Encode,
Bonsai Sampler, Bonsai Decode, Bonsai Generate.  Put this folder (as built,
with its _bonsai extension) into ComfyUI/custom_nodes/.
"""

from . import comfy_host
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

comfy_host.register_model_folder()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
