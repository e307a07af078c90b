"""Runs ComfyUI API-format workflows outside ComfyUI, following the rules of
ComfyUI's nodes.py and execution.py that a node pack depends on:

- a custom-node folder is loaded as ComfyUI loads it (a package from its
  __init__.py under a module name made from its path; NODE_CLASS_MAPPINGS,
  NODE_DISPLAY_NAME_MAPPINGS);
- a prompt is validated first: every class known, required inputs present,
  links [node_id, output_index] pointing at an output of the type the input
  takes ("*" matches any), widget values converted (INT, FLOAT, STRING,
  BOOLEAN) and checked against min, max and combo lists;
- only the nodes an output node (OUTPUT_NODE) needs run, each after the
  nodes it takes inputs from, with its required inputs and the optional
  inputs the prompt gives; before each node the interrupt flag is checked;
- outputs are cached by input signature (class, IS_CHANGED, literal inputs
  and the signatures of linked nodes), so running a prompt again runs only
  the nodes whose inputs changed.

SaveImage and LoadImage, ComfyUI built-ins the example workflows use, are
stood in for: SaveImage keeps the images in memory, LoadImage reads a PNG
from the executor's input folder.
"""

import importlib.util
import itertools
import math
import os
import sys

import numpy
import torch

import png


class WorkflowError(Exception):
    """A prompt ComfyUI would refuse before running anything."""


def load_custom_node(path):
    """Imports a custom-node folder as ComfyUI's load_custom_node does;
    returns the module."""
    path = os.path.abspath(path)
    sys_module_name = path.replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(sys_module_name, os.path.join(path, "__init__.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[sys_module_name] = module
    spec.loader.exec_module(module)
    return module


class SaveImage:
    """ComfyUI's SaveImage, keeping what it is given instead of writing files."""
    OUTPUT_NODE = True
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    CATEGORY = "image"
    saved = []

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI"})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save_images(self, images, filename_prefix="ComfyUI"):
        SaveImage.saved.append((filename_prefix, images))
        return {"ui": {"images": [{"filename": f"{filename_prefix}_{i:05}_.png"}
                                  for i in range(images.shape[0])]}}


class LoadImage:
    """ComfyUI's LoadImage for 8-bit PNGs: IMAGE [1, H, W, 3] and MASK."""
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"
    CATEGORY = "image"
    input_dir = "."

    @classmethod
    def INPUT_TYPES(cls):
        files = sorted(f for f in os.listdir(cls.input_dir) if f.endswith(".png"))
        return {"required": {"image": (files, {"image_upload": True})}}

    @classmethod
    def IS_CHANGED(cls, image):
        return os.stat(os.path.join(cls.input_dir, image)).st_mtime_ns

    def load_image(self, image):
        pixels = png.read(os.path.join(self.input_dir, image))
        rgb = torch.from_numpy(pixels[..., :3].astype(numpy.float32) / 255.0)[None]
        if pixels.shape[2] == 4:
            mask = 1.0 - torch.from_numpy(pixels[..., 3].astype(numpy.float32) / 255.0)
        else:
            mask = torch.zeros((64, 64), dtype=torch.float32)
        return (rgb, mask.unsqueeze(0))


BUILT_INS = {"SaveImage": SaveImage, "LoadImage": LoadImage}


def _input_info(class_inputs, name):
    for category in ("required", "optional"):
        if name in class_inputs.get(category, {}):
            spec = class_inputs[category][name]
            return spec[0], category, (spec[1] if len(spec) > 1 else {})
    return None, None, None


def _types_match(received, wanted):
    if received == "*" or wanted == "*":
        return True
    if isinstance(wanted, list):  # a combo takes strings
        return received in ("STRING", "COMBO")
    return set(str(received).split(",")) & set(str(wanted).split(",")) != set()


class Executor:
    """Runs prompts on a set of node classes, keeping outputs between runs."""

    def __init__(self, node_classes, interrupted=None):
        self.classes = dict(BUILT_INS)
        self.classes.update(node_classes)
        self.interrupted = interrupted  # callable raising when interrupted
        self.cache = {}                 # signature -> outputs
        self.objects = {}               # (node id, class) -> node object
        self.executed = []              # ids run by the last run()
        self._runs = itertools.count()

    # ---- validation ----------------------------------------------------

    def validate(self, prompt):
        """Checks and converts the widget values in place; raises
        WorkflowError listing every problem."""
        errors = []
        for node_id, node in prompt.items():
            cls = self.classes.get(node.get("class_type"))
            if cls is None:
                errors.append(f"node {node_id}: unknown class_type {node.get('class_type')!r}")
                continue
            class_inputs = cls.INPUT_TYPES()
            inputs = node.setdefault("inputs", {})
            for category in ("required", "optional"):
                for name in class_inputs.get(category, {}):
                    if name not in inputs:
                        if category == "required":
                            errors.append(f"node {node_id} ({node['class_type']}): required input "
                                          f"{name!r} is missing")
                        continue
                    problem = self._check_input(prompt, class_inputs, name, inputs)
                    if problem:
                        errors.append(f"node {node_id} ({node['class_type']}): {problem}")
        if not any(getattr(self.classes.get(n.get("class_type")), "OUTPUT_NODE", False)
                   for n in prompt.values()):
            errors.append("the prompt has no outputs")
        if errors:
            raise WorkflowError("; ".join(errors))

    def _check_input(self, prompt, class_inputs, name, inputs):
        wanted, _, extra = _input_info(class_inputs, name)
        value = inputs[name]
        if isinstance(value, list):
            if len(value) != 2 or str(value[0]) not in prompt or not isinstance(value[1], int):
                return f"{name}: a link must be [node_id, output_index], not {value!r}"
            source = self.classes.get(prompt[str(value[0])]["class_type"])
            if source is None:
                return None  # reported for that node
            returns = source.RETURN_TYPES
            if not 0 <= value[1] < len(returns):
                return f"{name}: node {value[0]} has no output {value[1]}"
            if not _types_match(returns[value[1]], wanted):
                return f"{name}: received {returns[value[1]]}, takes {wanted}"
            return None
        convert = None
        if isinstance(wanted, str):
            convert = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}.get(wanted)
        try:
            if convert is not None:
                value = convert(value)
        except (TypeError, ValueError) as e:
            return f"{name}: cannot convert {value!r} to {wanted} ({e})"
        inputs[name] = value
        if "min" in extra and value < extra["min"]:
            return f"{name}: {value} is smaller than the minimum {extra['min']}"
        if "max" in extra and value > extra["max"]:
            return f"{name}: {value} is bigger than the maximum {extra['max']}"
        if isinstance(wanted, list) and value not in wanted:
            return f"{name}: {value!r} is not one of {wanted}"
        return None

    # ---- execution -----------------------------------------------------

    def _order(self, prompt):
        """Output nodes and what they need, every node after its inputs."""
        order, state = [], {}

        def visit(node_id):
            if state.get(node_id) == "done":
                return
            if state.get(node_id) == "visiting":
                raise WorkflowError(f"the prompt has a cycle through node {node_id}")
            state[node_id] = "visiting"
            for value in prompt[node_id]["inputs"].values():
                if isinstance(value, list):
                    visit(str(value[0]))
            state[node_id] = "done"
            order.append(node_id)

        for node_id, node in prompt.items():
            if getattr(self.classes[node["class_type"]], "OUTPUT_NODE", False):
                visit(node_id)
        return order

    def _signature(self, prompt, node_id, signatures, literal_inputs):
        node = prompt[node_id]
        cls = self.classes[node["class_type"]]
        parts = []
        for name, value in sorted(node["inputs"].items()):
            if isinstance(value, list):
                parts.append((name, signatures[str(value[0])], value[1]))
            else:
                parts.append((name, repr(value)))
        changed = cls.IS_CHANGED(**literal_inputs) if hasattr(cls, "IS_CHANGED") else None
        if isinstance(changed, float) and math.isnan(changed):
            changed = ("always", next(self._runs))  # NaN: run every time
        return (node["class_type"], repr(changed), tuple(parts))

    def run(self, prompt):
        """Validates and runs `prompt` (the "prompt" object of a /prompt
        request); returns {node_id: outputs} of the nodes it needed."""
        self.validate(prompt)
        order = self._order(prompt)
        signatures, outputs = {}, {}
        self.executed = []
        for node_id in order:
            node = prompt[node_id]
            cls = self.classes[node["class_type"]]
            class_inputs = cls.INPUT_TYPES()
            kwargs, literals = {}, {}
            for name, value in node["inputs"].items():
                _, category, _ = _input_info(class_inputs, name)
                if category is None:
                    continue  # not an input of this class: ComfyUI ignores it
                if isinstance(value, list):
                    kwargs[name] = outputs[str(value[0])][value[1]]
                else:
                    kwargs[name] = literals[name] = value
            signature = self._signature(prompt, node_id, signatures, literals)
            signatures[node_id] = signature
            if signature in self.cache:
                outputs[node_id] = self.cache[signature]
                continue
            if self.interrupted is not None:
                self.interrupted()
            obj = self.objects.setdefault((node_id, node["class_type"]), cls())
            result = getattr(obj, cls.FUNCTION)(**kwargs)
            if isinstance(result, dict):  # an output node: {"ui": ..., "result": ...}
                result = result.get("result", ())
            result = tuple(result)
            if len(result) != len(cls.RETURN_TYPES):
                raise WorkflowError(f"node {node_id} ({node['class_type']}) returned "
                                    f"{len(result)} outputs, RETURN_TYPES has {len(cls.RETURN_TYPES)}")
            self.executed.append(node_id)
            self.cache[signature] = outputs[node_id] = result
        return outputs
