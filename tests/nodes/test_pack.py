"""The node pack as ComfyUI runs it, outside ComfyUI (its imports guarded):
loaded as a custom-node folder, every node's contract, the example workflows
through the harness on the small model, pixels equal to the CLI's, prompt
encoding done once, bad inputs refused clearly, and no growth over 50 runs."""

import copy
import gc
import inspect
import json
import os
import subprocess
import sys
import tracemalloc
import unittest

import common
common.require("numpy", "torch")
import numpy  # noqa: E402
import torch  # noqa: E402

import harness  # noqa: E402
import png  # noqa: E402

PROMPT = common.PROMPT
W, H = common.W, common.H


def setUpModule():
    global TMP, MODEL_DIR, PACK, EX
    TMP = common.new_tmpdir("nodes-pack")
    MODEL_DIR = common.shapes_model()
    PACK = harness.load_custom_node(common.PACK)
    EX = harness.Executor(PACK.NODE_CLASS_MAPPINGS)


def tearDownModule():
    common.remove(TMP)


def workflow(name, **changes):
    """An example workflow on the small model; `changes` maps
    "node_id.input" to a new value."""
    with open(os.path.join(common.WORKFLOWS, name + ".json")) as f:
        prompt = json.load(f)
    for node in prompt.values():
        if node["class_type"] == "LoadBonsaiModel":
            node["inputs"]["model"] = MODEL_DIR
        for key in ("width", "height"):
            if node["inputs"].get(key):
                node["inputs"][key] = W if key == "width" else H
    for key, value in changes.items():
        node_id, name = key.split(".")
        prompt[node_id]["inputs"][name] = value
    return prompt


def cli(*args):
    out = os.path.join(TMP, "cli.png")
    subprocess.run([common.BONSAI_IMAGE, *args, "-m", MODEL_DIR, "-o", out, "-q"], check=True)
    return png.read(out)


def u8(image):
    return torch.round(image.clamp(0, 1) * 255).to(torch.uint8).numpy()


def stats():
    return PACK.nodes._bonsai.cache_stats()


class Contract(unittest.TestCase):
    NAMES = {"LoadBonsaiModel": "Load Bonsai Model", "BonsaiTextEncode": "Bonsai Text Encode",
             "BonsaiSampler": "Bonsai Sampler", "BonsaiDecode": "Bonsai Decode",
             "BonsaiGenerate": "Bonsai Generate"}
    TYPES = {"LoadBonsaiModel": ((), ("BONSAI_MODEL",)),
             "BonsaiTextEncode": (("BONSAI_MODEL", "STRING"), ("CONDITIONING",)),
             "BonsaiSampler": (("BONSAI_MODEL", "CONDITIONING", "INT"), ("LATENT",)),
             "BonsaiDecode": (("BONSAI_MODEL", "LATENT"), ("IMAGE",)),
             "BonsaiGenerate": (("BONSAI_MODEL", "STRING", "INT"), ("IMAGE",))}

    def test_mappings(self):
        self.assertEqual(PACK.NODE_DISPLAY_NAME_MAPPINGS, self.NAMES)
        self.assertEqual(set(PACK.NODE_CLASS_MAPPINGS), set(self.NAMES))
        self.assertTrue(PACK.__name__.endswith("comfyui_bonsai"))
        self.assertFalse(hasattr(PACK, "comfy_entrypoint"))  # V1 only: never both

    def test_each_node(self):
        for name, cls in PACK.NODE_CLASS_MAPPINGS.items():
            with self.subTest(node=name):
                self.assertEqual(cls.CATEGORY, "Bonsai Image")
                self.assertIsInstance(inspect.getattr_static(cls, "INPUT_TYPES"), classmethod)
                inputs = cls.INPUT_TYPES()
                self.assertLessEqual(set(inputs), {"required", "optional", "hidden"})
                self.assertIsInstance(cls.RETURN_TYPES, tuple)
                self.assertTrue(all(isinstance(t, str) for t in cls.RETURN_TYPES))
                if hasattr(cls, "RETURN_NAMES"):
                    self.assertEqual(len(cls.RETURN_NAMES), len(cls.RETURN_TYPES))
                self.assertFalse(getattr(cls, "OUTPUT_NODE", False))
                self.assertIsInstance(cls.DESCRIPTION, str)
                wanted_in, wanted_out = self.TYPES[name]
                self.assertEqual(cls.RETURN_TYPES, wanted_out)
                types = set()
                for category in ("required", "optional"):
                    for input_name, spec in inputs.get(category, {}).items():
                        self.assertIsInstance(spec, tuple, input_name)
                        self.assertTrue(isinstance(spec[0], (str, list)), input_name)
                        if len(spec) > 1:
                            self.assertIsInstance(spec[1], dict, input_name)
                            options = spec[1]
                            if "default" in options and "min" in options:
                                self.assertTrue(options["min"] <= options["default"] <= options["max"])
                        types.add(spec[0])
                self.assertLessEqual(set(wanted_in), types)
                # FUNCTION takes every input by name: required ones as
                # parameters, optional ones as parameters or **kwargs.
                function = getattr(cls, cls.FUNCTION)
                params = inspect.signature(function).parameters
                takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
                for input_name in inputs["required"]:
                    self.assertIn(input_name, params)
                for input_name in inputs.get("optional", {}):
                    self.assertTrue(takes_any or input_name in params, input_name)
                for p_name, p in params.items():
                    if p_name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) \
                       and p.default is p.empty:
                        self.assertIn(p_name, inputs["required"])

    def test_sampler_and_generate_take_references(self):
        for name in ("BonsaiSampler", "BonsaiGenerate"):
            optional = PACK.NODE_CLASS_MAPPINGS[name].INPUT_TYPES()["optional"]
            self.assertEqual({k: v[0] for k, v in optional.items()},
                             {f"reference_{k}": "IMAGE" for k in range(1, 5)})


class Workflows(unittest.TestCase):
    def test_txt2img(self):
        harness.SaveImage.saved.clear()
        executor = harness.Executor(PACK.NODE_CLASS_MAPPINGS)
        outputs = executor.run(workflow("txt2img", **{"2.text": PROMPT}))
        self.assertEqual(executor.executed, ["1", "2", "3", "4", "5"])
        latent = outputs["3"][0]
        self.assertEqual(set(latent), {"samples"})
        self.assertEqual(latent["samples"].dtype, torch.float32)
        self.assertEqual(tuple(latent["samples"].shape), (1, 32, H // 16, W // 16))
        (prefix, image), = harness.SaveImage.saved
        self.assertEqual(prefix, "bonsai-txt2img")
        self.assertEqual((image.dtype, tuple(image.shape)), (torch.float32, (1, H, W, 3)))
        self.assertTrue(0 <= float(image.min()) and float(image.max()) <= 1)
        # The CLI's image for the same request and seed, to the last bit.
        expect = cli("generate", "-p", PROMPT, "-W", str(W), "-H", str(H), "--seed", "42", "--steps", "4")
        numpy.testing.assert_array_equal(u8(image[0]), expect[..., :3])

    def test_same_prompt_encodes_once(self):
        executor = harness.Executor(PACK.NODE_CLASS_MAPPINGS)
        executor.run(workflow("txt2img"))
        before = stats()
        outputs = executor.run(workflow("txt2img", **{"3.seed": 43}))
        # The text encoder node's output is cached; only what the seed
        # changes runs again, and the engine encodes nothing.
        self.assertEqual(executor.executed, ["3", "4", "5"])
        self.assertEqual(stats()["prompt_encodes"], before["prompt_encodes"])
        executor.run(workflow("txt2img", **{"3.seed": 43}))
        self.assertEqual(executor.executed, [])
        # A new executor (ComfyUI restarted its cache): the Text Encode node
        # runs again, the engine answers from its prompt cache.
        fresh = harness.Executor(PACK.NODE_CLASS_MAPPINGS)
        fresh.run(workflow("txt2img", **{"3.seed": 44}))
        self.assertIn("2", fresh.executed)
        self.assertEqual(stats()["prompt_encodes"], before["prompt_encodes"])
        self.assertEqual(tuple(outputs["4"][0].shape), (1, H, W, 3))

    def test_seed_sweep(self):
        harness.SaveImage.saved.clear()
        prompt = workflow("seed-sweep", **{"2.prompt": "a sweep prompt", "3.prompt": "a sweep prompt",
                                           "4.prompt": "a sweep prompt"})
        before = stats()
        EX.run(prompt)
        after = stats()
        # Three Bonsai Generate nodes, one prompt: encoded once.
        self.assertEqual(after["prompt_encodes"] - before["prompt_encodes"], 1)
        self.assertEqual(after["prompt_hits"] - before["prompt_hits"], 2)
        images = [image for _, image in harness.SaveImage.saved]
        self.assertEqual(len(images), 3)
        for a in range(3):
            for b in range(a + 1, 3):
                self.assertFalse(torch.equal(images[a], images[b]))
        # Seed 2 alone equals the sweep's second image, and the CLI's.
        expect = cli("generate", "-p", "a sweep prompt", "-W", str(W), "-H", str(H), "--seed", "2")
        numpy.testing.assert_array_equal(u8(images[1][0]), expect[..., :3])

    def test_batch(self):
        node = PACK.NODE_CLASS_MAPPINGS["BonsaiGenerate"]()
        model, = PACK.NODE_CLASS_MAPPINGS["LoadBonsaiModel"]().load(MODEL_DIR, 0)
        batch, = node.generate(model, PROMPT, W, H, 5, 2, 3)
        self.assertEqual(tuple(batch.shape), (3, H, W, 3))
        single, = node.generate(model, PROMPT, W, H, 6, 2, 1)
        self.assertTrue(torch.equal(batch[1], single[0]))  # image b uses seed + b
        sampler = PACK.NODE_CLASS_MAPPINGS["BonsaiSampler"]()
        cond, = PACK.NODE_CLASS_MAPPINGS["BonsaiTextEncode"]().encode(model, PROMPT)
        self.assertEqual(tuple(cond[0][0].shape), (1, 512, 96))
        latent, = sampler.sample(model, cond, W, H, 5, 2, 3)
        decoded, = PACK.NODE_CLASS_MAPPINGS["BonsaiDecode"]().decode(model, latent)
        self.assertTrue(torch.equal(decoded, batch))

    def test_edit(self):
        harness.SaveImage.saved.clear()
        inputs = common.new_tmpdir("nodes-input")
        try:
            source = os.path.join(inputs, "bonsai-input.png")
            subprocess.run([common.BONSAI_IMAGE, "generate", "-m", MODEL_DIR, "-p", PROMPT, "-W", "96",
                            "-H", "80", "--seed", "1", "-q", "-o", source], check=True)
            harness.LoadImage.input_dir = inputs
            EX.run(workflow("edit"))
            (_, image), = harness.SaveImage.saved
            self.assertEqual(tuple(image.shape), (1, 80, 96, 3))  # the reference's size
            text = json.load(open(os.path.join(common.WORKFLOWS, "edit.json")))["3"]["inputs"]["text"]
            expect = cli("edit", "-i", source, "-p", text, "--seed", "7")
            numpy.testing.assert_array_equal(u8(image[0]), expect[..., :3])
            # Two references, one of them a batch of two: three in all.
            harness.SaveImage.saved.clear()
            prompt = workflow("edit")
            prompt["7"] = {"class_type": "BonsaiGenerate",
                           "inputs": {"bonsai_model": ["1", 0], "prompt": "snow", "width": W, "height": H,
                                      "seed": 1, "steps": 1, "batch_size": 2}}
            prompt["4"]["inputs"]["reference_2"] = ["7", 0]
            EX.run(prompt)
            self.assertEqual(tuple(harness.SaveImage.saved[0][1].shape), (1, 80, 96, 3))
        finally:
            common.remove(inputs)


class BadInput(unittest.TestCase):
    def setUp(self):
        self.model, = PACK.NODE_CLASS_MAPPINGS["LoadBonsaiModel"]().load(MODEL_DIR, 0)

    def test_wrong_types(self):
        sampler = PACK.NODE_CLASS_MAPPINGS["BonsaiSampler"]()
        generate = PACK.NODE_CLASS_MAPPINGS["BonsaiGenerate"]()
        decode = PACK.NODE_CLASS_MAPPINGS["BonsaiDecode"]()
        image = torch.zeros((1, H, W, 3))
        cases = [
            (TypeError, "Bonsai Sampler: bonsai_model must come from Load Bonsai Model",
             lambda: sampler.sample("model", [], W, H, 0, 1, 1)),
            (TypeError, "Bonsai Sampler: conditioning must be a CONDITIONING",
             lambda: sampler.sample(self.model, "a tree", W, H, 0, 1, 1)),
            (TypeError, "Bonsai Sampler: width must be an int",
             lambda: sampler.sample(self.model, [[torch.zeros(1, 4, 192), {}]], "80", H, 0, 1, 1)),
            (ValueError, "Bonsai Generate: seed must be from 0",
             lambda: generate.generate(self.model, PROMPT, W, H, -1, 1, 1)),
            (TypeError, "Bonsai Generate: prompt must be a string",
             lambda: generate.generate(self.model, None, W, H, 0, 1, 1)),
            (TypeError, "reference_1 must be an IMAGE",
             lambda: generate.generate(self.model, PROMPT, W, H, 0, 1, 1, reference_1=numpy.zeros((H, W, 3)))),
            (TypeError, "reference_2 must be an IMAGE: float",
             lambda: generate.generate(self.model, PROMPT, W, H, 0, 1, 1, reference_2=torch.zeros((1, H, W)))),
            (ValueError, "at most 4 reference images in all",
             lambda: generate.generate(self.model, PROMPT, W, H, 0, 1, 1, reference_1=image.repeat(3, 1, 1, 1),
                                       reference_2=image.repeat(2, 1, 1, 1))),
            (TypeError, "Bonsai Decode: samples must be a LATENT",
             lambda: decode.decode(self.model, torch.zeros((1, 32, 4, 5)))),
            (PACK.nodes._bonsai.BonsaiError, "prompt features must be \\[L, 96\\]",
             lambda: sampler.sample(self.model, [[torch.zeros(1, 4, 100), {}]], W, H, 0, 1, 1)),
            (PACK.nodes._bonsai.BonsaiError, "latents must be \\[32, H/16, W/16\\]",
             lambda: decode.decode(self.model, {"samples": torch.zeros((1, 128, 4, 5))})),
        ]
        for error, pattern, call in cases:
            with self.subTest(pattern=pattern):
                with self.assertRaisesRegex(error, pattern):
                    call()

    def test_missing_model(self):
        loader = PACK.NODE_CLASS_MAPPINGS["LoadBonsaiModel"]()
        missing = os.path.join(TMP, "missing-model")
        with self.assertRaisesRegex(PACK.nodes._bonsai.BonsaiError, "missing-model"):
            loader.load(missing, 0)
        with self.assertRaisesRegex(ValueError, "give a model folder or a model name"):
            loader.load("  ", 0)
        with self.assertRaises(harness.WorkflowError):
            EX.run(workflow("txt2img", **{"1.threads": -1}))

    def test_size_not_a_multiple_of_16(self):
        with self.assertRaisesRegex(PACK.nodes._bonsai.BonsaiError,
                                    "width 72 is not a multiple of 16: it must be a multiple of 16"):
            EX.run(workflow("txt2img", **{"3.width": 72}))
        generate = PACK.NODE_CLASS_MAPPINGS["BonsaiGenerate"]()
        with self.assertRaisesRegex(PACK.nodes._bonsai.BonsaiError, "height 40 is not a multiple of 16"):
            generate.generate(self.model, PROMPT, W, 40, 0, 1, 1)

    def test_workflow_checks(self):
        """What ComfyUI refuses before running, the harness refuses too."""
        cases = {
            "required input 'conditioning' is missing": lambda p: p["3"]["inputs"].pop("conditioning"),
            "cannot convert 'wide' to INT": lambda p: p["3"]["inputs"].update(width="wide"),
            "conditioning: received LATENT, takes CONDITIONING":
                lambda p: p["3"]["inputs"].update(conditioning=["3", 0]),
            "5000 is bigger than the maximum 4096": lambda p: p["3"]["inputs"].update(height=5000),
            "unknown class_type 'NoSuchNode'": lambda p: p.update({"9": {"class_type": "NoSuchNode", "inputs": {}}}),
            "the prompt has no outputs": lambda p: p.pop("5"),
            "node 1 has no output 3": lambda p: p["2"]["inputs"].update(bonsai_model=["1", 3]),
        }
        for message, change in cases.items():
            with self.subTest(message=message):
                prompt = workflow("txt2img")
                change(prompt)
                with self.assertRaisesRegex(harness.WorkflowError, message):
                    EX.run(prompt)


class Flat(unittest.TestCase):
    def test_fifty_runs(self):
        """50 runs of a workflow, nothing cached by the harness: references,
        Python memory and process memory stay flat."""
        base = workflow("txt2img", **{"3.steps": 1})

        def one(i):
            prompt = copy.deepcopy(base)
            prompt["3"]["inputs"]["seed"] = i
            harness.Executor(PACK.NODE_CLASS_MAPPINGS).run(prompt)
            harness.SaveImage.saved.clear()
        for i in range(10):
            one(i)
        gc.collect()
        model, = PACK.NODE_CLASS_MAPPINGS["LoadBonsaiModel"]().load(MODEL_DIR, 0)
        refs = sys.getrefcount(model.engine)
        models = stats()["models"]
        rss = common.rss_bytes()
        tracemalloc.start()
        snapshot = tracemalloc.take_snapshot()
        for i in range(50):
            one(i)
        gc.collect()
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(snapshot, "filename"))
        tracemalloc.stop()
        rss_grown = common.rss_bytes() - rss
        print(f"50 workflow runs: Python memory {grown:+d} bytes, RSS {rss_grown / 1e6:+.1f} MB",
              file=sys.stderr)
        self.assertEqual(sys.getrefcount(model.engine), refs)
        self.assertEqual(stats()["models"], models)
        self.assertLess(grown, 256 * 1024)
        if common.RSS_MEANINGFUL:
            self.assertLess(rss_grown, 1e6)


if __name__ == "__main__":
    unittest.main(verbosity=2)
