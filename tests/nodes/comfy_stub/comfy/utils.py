"""comfy.utils.ProgressBar and the global progress hook.  The hook here is
the one ComfyUI's main.py installs, less the websocket: it checks the
interrupt flag, then records the update (tests read `updates`)."""

from . import model_management

updates = []


def hook(value, total, preview, node_id=None):
    model_management.throw_exception_if_processing_interrupted()
    updates.append((value, total))


PROGRESS_BAR_HOOK = hook


class ProgressBar:
    def __init__(self, total, node_id=None):
        self.total = total
        self.current = 0
        self.hook = PROGRESS_BAR_HOOK
        self.node_id = node_id

    def update_absolute(self, value, total=None, preview=None):
        if total is not None:
            self.total = total
        if value > self.total:
            value = self.total
        self.current = value
        if self.hook is not None:
            self.hook(self.current, self.total, preview, node_id=self.node_id)

    def update(self, value):
        self.update_absolute(self.current + value)
