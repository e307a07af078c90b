"""The Bonsai Image nodes.  They convert ComfyUI's types (convert.py) and call
the engine (_bonsai); nothing about models, caching or threads lives here.

Batches: image b of a batch uses seed + b, so any image of a batch can be
made again alone from its own seed.
"""

import numpy

from . import _bonsai, comfy_host, convert

CATEGORY = "Bonsai Image"
MAX_BATCH = 64
SEED_MAX = 0xFFFFFFFFFFFFFFFF
MAX_REFERENCES = 4
SIZE_HELP = ("A multiple of 16. 0: the first reference image's size (or 1024 "
             "without references).")


class BonsaiModel:
    """What flows along a BONSAI_MODEL link: the engine's model and the thread
    count its calls use."""

    def __init__(self, engine, threads):
        self.engine = engine
        self.threads = threads

    def __repr__(self):
        return f"BonsaiModel({self.engine.path!r}, threads={self.threads})"


def _model(value, node):
    if not isinstance(value, BonsaiModel):
        raise TypeError(f"{node}: bonsai_model must come from Load Bonsai Model, "
                        f"not {type(value).__name__}")
    return value


def _int(value, name, node, low, high):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{node}: {name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{node}: {name} must be from {low} to {high}, not {value}")
    return value


def _text(value, name, node):
    if not isinstance(value, str):
        raise TypeError(f"{node}: {name} must be a string, not {type(value).__name__}")
    return value


def _request(node, width, height, seed, steps, batch_size):
    """Checks the widget values every sampling node has."""
    _int(width, "width", node, 0, 16384)
    _int(height, "height", node, 0, 16384)
    _int(seed, "seed", node, 0, SEED_MAX)
    _int(steps, "steps", node, 1, 1000)
    _int(batch_size, "batch_size", node, 1, MAX_BATCH)


def _references(node, given):
    """The optional reference_1..4 IMAGE inputs as one list of arrays: every
    image of each batch, in order."""
    images = []
    for k in range(1, MAX_REFERENCES + 1):
        image = given.get(f"reference_{k}")
        if image is not None:
            images.extend(convert.image_list(image, node, f"reference_{k}"))
    if len(images) > MAX_REFERENCES:
        raise ValueError(f"{node}: at most {MAX_REFERENCES} reference images in all, "
                         f"not {len(images)}")
    return images


def _size_widgets():
    return {
        "width": ("INT", {"default": 1024, "min": 0, "max": 4096, "step": 16, "tooltip": SIZE_HELP}),
        "height": ("INT", {"default": 1024, "min": 0, "max": 4096, "step": 16, "tooltip": SIZE_HELP}),
        "seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True,
                         "tooltip": "Picks the noise; image b of a batch uses seed + b."}),
        "steps": ("INT", {"default": 4, "min": 1, "max": 1000,
                          "tooltip": "Denoising steps; klein is distilled for 4."}),
        "batch_size": ("INT", {"default": 1, "min": 1, "max": MAX_BATCH}),
    }


def _reference_inputs():
    return {f"reference_{k}": ("IMAGE", {"tooltip": "An image to edit from (optional; "
                                                    "up to 4 images in all)."})
            for k in range(1, MAX_REFERENCES + 1)}


class LoadBonsaiModel:
    DESCRIPTION = ("Opens a Bonsai Image model: a release folder, a folder in "
                   "ComfyUI/models/bonsai_image, or a model name the engine knows. "
                   "An open model is shared by every node that uses it.")
    RETURN_TYPES = ("BONSAI_MODEL",)
    RETURN_NAMES = ("bonsai_model",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            # The real model when installed, else the bundled Bonsai Shapes one.
            "model": ("STRING", {"default": _bonsai.default_model(),
                                 "tooltip": "Folder or name of the model."}),
            "threads": ("INT", {"default": 0, "min": 0, "max": 1024,
                                "tooltip": "CPU threads; 0: one per processor."}),
        }}

    def load(self, model, threads=0):
        node = "Load Bonsai Model"
        _text(model, "model", node)
        _int(threads, "threads", node, 0, 1024)
        path = comfy_host.resolve_model(model)
        try:
            engine = _bonsai.Model(path)
        except _bonsai.BonsaiError as e:
            # "Which folder?" is the question: say where ComfyUI looked too.
            folders = comfy_host.model_search_folders()
            if e.code == _bonsai.ERROR_NOT_FOUND and path == model.strip() and folders:
                e.args = (f"{e}; nor a folder of that name in {', '.join(folders)}",)
            raise
        return (BonsaiModel(engine, threads),)


class BonsaiTextEncode:
    DESCRIPTION = ("Encodes a prompt with the model's text encoder. The engine "
                   "remembers recent prompts, so trying seeds encodes once.")
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = CATEGORY

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "bonsai_model": ("BONSAI_MODEL",),
            "text": ("STRING", {"multiline": True, "dynamicPrompts": True}),
        }}

    def encode(self, bonsai_model, text):
        node = "Bonsai Text Encode"
        model = _model(bonsai_model, node)
        _text(text, "text", node)
        comfy_host.check_interrupt()
        features = model.engine.encode_prompt(text, threads=model.threads)
        return (convert.conditioning_of(features),)


class BonsaiSampler:
    DESCRIPTION = ("Denoises from seeded noise to FLUX.2 latents, conditioned on "
                   "the prompt and on up to 4 reference images (editing).")
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"
    CATEGORY = CATEGORY

    @classmethod
    def INPUT_TYPES(cls):
        required = {"bonsai_model": ("BONSAI_MODEL",), "conditioning": ("CONDITIONING",)}
        required.update(_size_widgets())
        return {"required": required, "optional": _reference_inputs()}

    def sample(self, bonsai_model, conditioning, width, height, seed, steps, batch_size, **references):
        node = "Bonsai Sampler"
        model = _model(bonsai_model, node)
        _request(node, width, height, seed, steps, batch_size)
        features = convert.features_of(conditioning, node)
        refs = _references(node, references)
        progress = comfy_host.Progress(steps * batch_size)
        samples = []
        for b in range(batch_size):
            samples.append(model.engine.sample(
                features=features, references=refs, width=width, height=height,
                seed=(seed + b) & SEED_MAX, steps=steps, threads=model.threads,
                progress=progress))
            progress.next_image(steps)
        return (convert.latent_of(samples),)


class BonsaiDecode:
    DESCRIPTION = "Decodes FLUX.2 latents to images with the model's VAE."
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"
    CATEGORY = CATEGORY

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"bonsai_model": ("BONSAI_MODEL",), "samples": ("LATENT",)}}

    def decode(self, bonsai_model, samples):
        node = "Bonsai Decode"
        model = _model(bonsai_model, node)
        latents = convert.latent_list(samples, node)
        if not latents:
            raise ValueError(f"{node}: the LATENT batch is empty")
        multiple = model.engine.size_multiple
        _, h, w = latents[0].shape
        images = convert.new_images(len(latents), h * multiple, w * multiple)
        progress = comfy_host.Progress(len(latents))
        for b, latent in enumerate(latents):
            model.engine.decode(latent, out=images[b].numpy(), threads=model.threads,
                                progress=progress)
        return (images,)


class BonsaiGenerate:
    DESCRIPTION = ("Prompt (and optional reference images) to images in one node: "
                   "encode, sample, decode.")
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "generate"
    CATEGORY = CATEGORY

    @classmethod
    def INPUT_TYPES(cls):
        required = {"bonsai_model": ("BONSAI_MODEL",),
                    "prompt": ("STRING", {"multiline": True, "dynamicPrompts": True})}
        required.update(_size_widgets())
        return {"required": required, "optional": _reference_inputs()}

    def generate(self, bonsai_model, prompt, width, height, seed, steps, batch_size, **references):
        node = "Bonsai Generate"
        model = _model(bonsai_model, node)
        _text(prompt, "prompt", node)
        _request(node, width, height, seed, steps, batch_size)
        refs = _references(node, references)
        progress = comfy_host.Progress(steps * batch_size)
        # With a size of 0 the first image tells the size (that of the first
        # reference); otherwise every image is written straight into the batch.
        images = convert.new_images(batch_size, height, width) if width and height else None
        for b in range(batch_size):
            args = dict(prompt=prompt, references=refs, width=width, height=height,
                        seed=(seed + b) & SEED_MAX, steps=steps, threads=model.threads,
                        progress=progress)
            if images is None:
                first = numpy.asarray(model.engine.generate(**args))
                images = convert.new_images(batch_size, first.shape[0], first.shape[1])
                images[0].numpy()[...] = first
            else:
                model.engine.generate(out=images[b].numpy(), **args)
            progress.next_image(steps)
        return (images,)


NODE_CLASS_MAPPINGS = {
    "LoadBonsaiModel": LoadBonsaiModel,
    "BonsaiTextEncode": BonsaiTextEncode,
    "BonsaiSampler": BonsaiSampler,
    "BonsaiDecode": BonsaiDecode,
    "BonsaiGenerate": BonsaiGenerate,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "LoadBonsaiModel": "Load Bonsai Model",
    "BonsaiTextEncode": "Bonsai Text Encode",
    "BonsaiSampler": "Bonsai Sampler",
    "BonsaiDecode": "Bonsai Decode",
    "BonsaiGenerate": "Bonsai Generate",
}
