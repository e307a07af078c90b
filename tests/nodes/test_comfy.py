"""The node pack inside ComfyUI: with comfy.utils, comfy.model_management and
folder_paths importable (comfy_stub/ stands in for them), progress goes to
ComfyUI's progress bar, an interrupt stops the engine within one step, and
model names are looked up in ComfyUI's model folders."""

import os
import sys
import threading
import unittest

import common
common.require("numpy", "torch")
import torch  # noqa: E402

TMP = common.new_tmpdir("nodes-comfy")
os.environ["BONSAI_STUB_MODELS_DIR"] = os.path.join(TMP, "models")
sys.path.insert(0, os.path.join(common.HERE, "comfy_stub"))

import comfy.model_management  # noqa: E402
import comfy.utils  # noqa: E402
import folder_paths  # noqa: E402
import harness  # noqa: E402

PROMPT = common.PROMPT
W, H = common.W, common.H


def setUpModule():
    global MODEL_DIR, PACK, MODEL
    MODEL_DIR = common.shapes_model()
    PACK = harness.load_custom_node(common.PACK)
    MODEL, = PACK.NODE_CLASS_MAPPINGS["LoadBonsaiModel"]().load(MODEL_DIR, 0)


def tearDownModule():
    common.remove(TMP)


def generate(steps, batch_size=1, width=W, height=H):
    node = PACK.NODE_CLASS_MAPPINGS["BonsaiGenerate"]()
    return node.generate(MODEL, PROMPT, width, height, 9, steps, batch_size)[0]


class ModelFolders(unittest.TestCase):
    def test_registered(self):
        self.assertEqual(folder_paths.get_folder_paths("bonsai_image"),
                         [os.path.join(TMP, "models", "bonsai_image")])

    def test_lookup(self):
        loader = PACK.NODE_CLASS_MAPPINGS["LoadBonsaiModel"]()
        for kind in ("bonsai_image", "diffusion_models"):
            with self.subTest(kind=kind):
                folder = os.path.join(TMP, "models", kind)
                os.makedirs(folder, exist_ok=True)
                os.symlink(MODEL_DIR, os.path.join(folder, "tiny-" + kind))
                model, = loader.load("tiny-" + kind, 1)
                self.assertEqual(model.engine.path, os.path.join(folder, "tiny-" + kind))
                self.assertEqual(model.threads, 1)
        with self.assertRaises(PACK.nodes._bonsai.BonsaiError) as e:
            loader.load("no-such-model", 0)
        self.assertIn("no-such-model", str(e.exception))
        self.assertIn("nor a folder of that name in " + os.path.join(TMP, "models", "bonsai_image"),
                      str(e.exception))
        self.assertEqual(e.exception.code, PACK.nodes._bonsai.ERROR_NOT_FOUND)


class ProgressBar(unittest.TestCase):
    def test_updates(self):
        comfy.utils.updates.clear()
        images = generate(steps=3, batch_size=2)
        self.assertEqual(tuple(images.shape), (2, H, W, 3))
        self.assertEqual(comfy.utils.updates, [(v, 6) for v in range(1, 7)])


class Interrupt(unittest.TestCase):
    def tearDown(self):
        comfy.utils.PROGRESS_BAR_HOOK = comfy.utils.hook
        comfy.model_management.interrupt_current_processing(False)

    def test_at_a_step(self):
        """The user presses cancel during step 2: step 3 never starts."""
        def hook(value, total, preview, node_id=None):
            comfy.utils.hook(value, total, preview, node_id)
            if value == 2:
                comfy.model_management.interrupt_current_processing()
        comfy.utils.PROGRESS_BAR_HOOK = hook
        comfy.utils.updates.clear()
        with self.assertRaises(comfy.model_management.InterruptProcessingException):
            generate(steps=8)
        self.assertEqual(comfy.utils.updates, [(1, 8), (2, 8)])
        comfy.utils.PROGRESS_BAR_HOOK = comfy.utils.hook
        self.assertEqual(tuple(generate(steps=1).shape), (1, H, W, 3))  # runs again

    def test_from_another_thread(self):
        """/interrupt arrives on the server's thread while the engine runs:
        at most the step under way finishes."""
        comfy.utils.updates.clear()
        at_interrupt = []

        def interrupter():
            while len(comfy.utils.updates) < 2:
                threading.Event().wait(0.001)
            at_interrupt.append(len(comfy.utils.updates))
            comfy.model_management.interrupt_current_processing()
        thread = threading.Thread(target=interrupter)
        thread.start()
        with self.assertRaises(comfy.model_management.InterruptProcessingException):
            generate(steps=200, width=256, height=256)
        thread.join()
        self.assertLessEqual(len(comfy.utils.updates) - at_interrupt[0], 1)
        self.assertLess(len(comfy.utils.updates), 10)

    def test_before_a_node(self):
        """The harness checks the flag before each node, as ComfyUI does."""
        executor = harness.Executor(PACK.NODE_CLASS_MAPPINGS,
                                    comfy.model_management.throw_exception_if_processing_interrupted)
        prompt = {"1": {"class_type": "LoadBonsaiModel", "inputs": {"model": MODEL_DIR, "threads": 0}},
                  "2": {"class_type": "BonsaiGenerate",
                        "inputs": {"bonsai_model": ["1", 0], "prompt": PROMPT, "width": W, "height": H,
                                   "seed": 1, "steps": 1, "batch_size": 1}},
                  "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}}
        comfy.model_management.interrupt_current_processing()
        with self.assertRaises(comfy.model_management.InterruptProcessingException):
            executor.run(prompt)
        self.assertEqual(executor.executed, [])
        executor.run(prompt)
        self.assertEqual(executor.executed, ["1", "2", "3"])

    def test_text_encode_and_decode(self):
        encode = PACK.NODE_CLASS_MAPPINGS["BonsaiTextEncode"]()
        decode = PACK.NODE_CLASS_MAPPINGS["BonsaiDecode"]()
        comfy.model_management.interrupt_current_processing()
        with self.assertRaises(comfy.model_management.InterruptProcessingException):
            encode.encode(MODEL, PROMPT)
        comfy.model_management.interrupt_current_processing()
        with self.assertRaises(comfy.model_management.InterruptProcessingException):
            decode.decode(MODEL, {"samples": torch.zeros((1, 32, H // 16, W // 16))})


if __name__ == "__main__":
    unittest.main(verbosity=2)
