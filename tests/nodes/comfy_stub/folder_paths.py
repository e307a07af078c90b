"""folder_paths as ComfyUI has it: model kinds mapped to folders.  Tests
set models_dir (ComfyUI/models) before the pack is imported."""

import os

models_dir = os.environ.get("BONSAI_STUB_MODELS_DIR", "models")
folder_names_and_paths = {
    "checkpoints": ([os.path.join(models_dir, "checkpoints")], {".safetensors"}),
    "diffusion_models": ([os.path.join(models_dir, "diffusion_models")], {".safetensors"}),
}


def add_model_folder_path(folder_name, full_folder_path, is_default=False):
    paths, extensions = folder_names_and_paths.setdefault(folder_name, ([], set()))
    if full_folder_path not in paths:
        if is_default:
            paths.insert(0, full_folder_path)
        else:
            paths.append(full_folder_path)


def get_folder_paths(folder_name):
    return folder_names_and_paths[folder_name][0][:]
