"""Stand-ins for the parts of ComfyUI's comfy package the node pack uses
(comfy.utils.ProgressBar, comfy.model_management's interrupt flag), with
ComfyUI's behaviour: the progress hook main.py installs checks the interrupt
flag first.  Tests put comfy_stub/ on sys.path to run the pack as inside
ComfyUI."""
