"""What the pack takes from ComfyUI when it runs inside it: the progress bar,
the interrupt flag and the model folders.

Every ComfyUI import is guarded, so the pack also runs outside ComfyUI (in
scripts and in the test harness): progress is then not shown and only the
engine's own checks apply.
"""

import os

try:  # ComfyUI's progress bar; its hook also raises on an interrupt
    import comfy.utils as _comfy_utils
except ImportError:
    _comfy_utils = None
try:
    import comfy.model_management as _model_management
except ImportError:
    _model_management = None
try:
    import folder_paths as _folder_paths
except ImportError:
    _folder_paths = None

# ComfyUI/models/bonsai_image/<model folder>: where users put release folders
# (extra_model_paths.yaml may add more under the same key).
MODEL_FOLDER = "bonsai_image"
# Other model folders a release folder may have been put in.
OTHER_FOLDERS = ("diffusion_models", "checkpoints")


def register_model_folder():
    """Declares ComfyUI/models/bonsai_image to ComfyUI (once)."""
    if _folder_paths is None:
        return
    if MODEL_FOLDER not in _folder_paths.folder_names_and_paths:
        _folder_paths.add_model_folder_path(
            MODEL_FOLDER, os.path.join(_folder_paths.models_dir, MODEL_FOLDER))


def model_search_folders():
    """The folders a model name is looked up in, inside ComfyUI; else none."""
    if _folder_paths is None:
        return []
    folders = []
    for key in (MODEL_FOLDER,) + OTHER_FOLDERS:
        try:
            folders.extend(_folder_paths.get_folder_paths(key))
        except KeyError:  # a folder kind this ComfyUI does not have
            continue
    return folders


def resolve_model(name):
    """A model folder for `name`: an existing folder as given, else a folder of
    that name in ComfyUI's model folders; otherwise `name` unchanged, for the
    engine to resolve (its model store knows names such as "ternary")."""
    name = name.strip()
    if not name:
        raise ValueError("Load Bonsai Model: give a model folder or a model name")
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        return expanded
    for folder in model_search_folders():
        candidate = os.path.join(folder, name)
        if os.path.isdir(candidate):
            return candidate
    return name


def check_interrupt():
    """Raises ComfyUI's InterruptProcessingException when the user cancelled."""
    if _model_management is not None:
        _model_management.throw_exception_if_processing_interrupted()


class Progress:
    """The engine's progress callback for one node: denoising steps move
    ComfyUI's progress bar (`total` steps over the whole batch); every call is
    also an interrupt check, so a cancel stops the engine within a step."""

    def __init__(self, total):
        self.total = max(1, total)
        self.offset = 0  # steps done by earlier images of the batch
        self.bar = _comfy_utils.ProgressBar(self.total) if _comfy_utils is not None else None

    def next_image(self, steps):
        """Called after each image of a batch with its number of steps."""
        self.offset += steps

    def __call__(self, stage, done, total):
        check_interrupt()
        if stage == "denoise" and self.bar is not None:
            self.bar.update_absolute(min(self.offset + done, self.total), self.total)
