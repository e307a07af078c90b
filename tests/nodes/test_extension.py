"""The _bonsai extension on its own, through numpy arrays: results written
in place through the buffer protocol, engine errors as BonsaiError, progress
and cancellation, the GIL released, several threads, and no growth over
many calls."""

import gc
import os
import sys
import threading
import time
import tracemalloc
import unittest

import common
common.require("numpy")
import numpy  # noqa: E402

sys.path.insert(0, common.PACK)
import _bonsai  # noqa: E402  (the extension built beside the pack)

PROMPT = common.PROMPT
W, H = common.W, common.H


def setUpModule():
    global TMP, MODEL_DIR, MODEL
    TMP = common.new_tmpdir("nodes-extension")
    MODEL_DIR = common.shapes_model()
    MODEL = _bonsai.Model(MODEL_DIR)


def tearDownModule():
    global MODEL
    MODEL = None
    common.remove(TMP)


def u8(image):
    """Float pixels as the engine rounds them to 8 bits."""
    return numpy.round(numpy.clip(image, 0, 1) * 255).astype(numpy.uint8)


class Model(unittest.TestCase):
    def test_open(self):
        self.assertEqual(MODEL.path, MODEL_DIR)
        self.assertEqual(MODEL.size_multiple, 16)
        self.assertIn("Model", repr(MODEL))
        before = _bonsai.cache_stats()
        again = _bonsai.Model(MODEL_DIR)
        after = _bonsai.cache_stats()
        self.assertEqual(after["model_hits"], before["model_hits"] + 1)
        self.assertEqual(after["model_opens"], before["model_opens"])
        self.assertEqual(again.size_multiple, 16)

    def test_missing(self):
        missing = os.path.join(TMP, "no-such-model")
        with self.assertRaises(_bonsai.BonsaiError) as e:
            _bonsai.Model(missing)
        self.assertEqual(e.exception.code, _bonsai.ERROR_NOT_FOUND)
        self.assertIn("no-such-model", str(e.exception))
        with self.assertRaises(TypeError):
            _bonsai.Model(42)
        unopened = _bonsai.Model.__new__(_bonsai.Model)
        with self.assertRaisesRegex(ValueError, "not open"):
            unopened.generate(prompt=PROMPT)

    def test_version(self):
        self.assertRegex(_bonsai.version(), r"^\d+\.\d+\.\d+")
        self.assertIn(_bonsai.cpu_isa(), ("avx512", "avx2", "scalar"))


class Pixels(unittest.TestCase):
    def test_outputs_agree(self):
        image = MODEL.generate(prompt=PROMPT, width=W, height=H, seed=42)
        self.assertEqual((image.width, image.height, image.shape), (W, H, (H, W, 3)))
        new = numpy.asarray(image)
        self.assertEqual((new.shape, new.dtype), ((H, W, 3), numpy.float32))
        self.assertTrue(0.0 <= new.min() and new.max() <= 1.0)
        self.assertGreater(new.std(), 0.0)

        out = numpy.full((H, W, 3), -1.0, numpy.float32)
        self.assertIs(MODEL.generate(prompt=PROMPT, seed=42, out=out), out)
        numpy.testing.assert_array_equal(out, new)

        rgba = numpy.zeros((H, W, 4), numpy.uint8)
        MODEL.generate(prompt=PROMPT, seed=42, out=rgba)
        numpy.testing.assert_array_equal(rgba[..., :3], u8(new))
        self.assertTrue((rgba[..., 3] == 255).all())
        made = numpy.asarray(MODEL.generate(prompt=PROMPT, width=W, height=H, seed=42, format="rgba8"))
        numpy.testing.assert_array_equal(made, rgba)

        # A view into a bigger array, as torch's image[b].numpy() is.
        batch = numpy.zeros((2, H, W, 3), numpy.float32)
        MODEL.generate(prompt=PROMPT, seed=42, out=batch[1])
        numpy.testing.assert_array_equal(batch[1], new)
        self.assertFalse(batch[0].any())

    def test_steps_compose(self):
        whole = numpy.asarray(MODEL.generate(prompt=PROMPT, width=W, height=H, seed=5, steps=2))
        features = MODEL.encode_prompt(PROMPT)
        self.assertEqual(features.shape[0], 512)
        latents = MODEL.sample(features=features, width=W, height=H, seed=5, steps=2)
        self.assertEqual(latents.shape, (32, H // 16, W // 16))
        numpy.testing.assert_array_equal(numpy.asarray(MODEL.decode(latents)), whole)
        # Given latents in place of the noise: the seed's noise gives the same.
        noise = MODEL.make_noise(W, H, 5)
        again = MODEL.generate(features=numpy.asarray(features), latents=noise, steps=2, width=W, height=H)
        numpy.testing.assert_array_equal(numpy.asarray(again), whole)
        out = numpy.zeros((H, W, 3), numpy.float32)
        MODEL.decode(numpy.asarray(latents), out=out)
        numpy.testing.assert_array_equal(out, whole)
        with self.assertRaisesRegex(ValueError, f"the engine made a {W}x{H} image for a 32x32 out array"):
            MODEL.decode(latents, out=numpy.zeros((32, 32, 3), numpy.float32))

    def test_tensor_buffer(self):
        t = MODEL.make_noise(W, H, 1)
        a = numpy.asarray(t)
        self.assertEqual((a.shape, a.dtype), ((32, H // 16, W // 16), numpy.float32))
        a[0, 0, 0] = 123.0
        self.assertEqual(numpy.asarray(t)[0, 0, 0], 123.0)  # shared, not copied
        view = memoryview(t)
        self.assertEqual((view.format, view.shape, view.c_contiguous), ("f", (32, H // 16, W // 16), True))
        del t, view
        gc.collect()
        self.assertEqual(a[0, 0, 0], 123.0)  # the array keeps the memory alive
        self.assertIn("Tensor", repr(MODEL.make_noise(16, 16, 0)))

    def test_edit(self):
        source = numpy.asarray(MODEL.generate(prompt=PROMPT, width=W, height=H, seed=3))
        rgba = numpy.dstack([u8(source), numpy.full((H, W), 255, numpy.uint8)])
        a = numpy.asarray(MODEL.edit([rgba], prompt=PROMPT, seed=1))
        self.assertEqual(a.shape, (H, W, 3))  # the reference's size
        # Float references are rounded to 8 bits as the engine reads them.
        b = numpy.asarray(MODEL.edit([rgba[..., :3].astype(numpy.float32) / 255], prompt=PROMPT, seed=1))
        numpy.testing.assert_array_equal(a, b)
        c = numpy.asarray(MODEL.generate(prompt=PROMPT, seed=1, references=(rgba,), width=32, height=32))
        self.assertEqual(c.shape, (32, 32, 3))
        with self.assertRaisesRegex(ValueError, "at least one reference"):
            MODEL.edit([], prompt=PROMPT)


class BadInput(unittest.TestCase):
    def assert_engine_error(self, code, pattern, **kwargs):
        with self.assertRaises(_bonsai.BonsaiError) as e:
            MODEL.generate(**kwargs)
        self.assertEqual(e.exception.code, code)
        self.assertRegex(str(e.exception), pattern)

    def test_engine_refusals(self):
        invalid = _bonsai.ERROR_INVALID_INPUT
        self.assert_engine_error(invalid, "width 72 is not a multiple of 16",
                                 prompt=PROMPT, width=72, height=H)
        self.assert_engine_error(invalid, "too large", prompt=PROMPT, width=100000, height=64)
        self.assert_engine_error(invalid, "neither a prompt nor", width=W, height=H)
        self.assert_engine_error(invalid, "not both", prompt=PROMPT,
                                 features=numpy.zeros((4, 192), numpy.float32), width=W, height=H)
        self.assert_engine_error(invalid, "prompt features must be",
                                 features=numpy.zeros((4, 5), numpy.float32), width=W, height=H)
        self.assert_engine_error(invalid, "initial latents", prompt=PROMPT, width=W, height=H,
                                 latents=numpy.zeros((32, 1, 1), numpy.float32))
        small = numpy.zeros((8, 8, 4), numpy.uint8)
        self.assert_engine_error(invalid, "reference image 1 is 8×8", prompt=PROMPT, references=[small])
        with self.assertRaises(_bonsai.BonsaiError):
            MODEL.decode(numpy.zeros((5, 2, 2), numpy.float32))

    def test_python_refusals(self):
        cases = [
            (TypeError, "out must be", dict(out=numpy.zeros((H, W, 3), numpy.float64))),
            (TypeError, "out must be", dict(out=numpy.zeros((H, W, 2), numpy.float32))),
            (TypeError, "C-contiguous", dict(out=numpy.zeros((H, W * 2, 3), numpy.float32)[:, ::2])),
            (TypeError, "writable", dict(out=numpy.zeros((H, W, 3), numpy.float32).view())),
            (ValueError, f"out is {W}x{H} but the request asks for 32x{H}",
             dict(out=numpy.zeros((H, W, 3), numpy.float32), width=32)),
            (TypeError, "give one image of a batch", dict(references=[numpy.zeros((1, H, W, 3), numpy.float32)])),
            (ValueError, "at most 4 reference images", dict(references=[numpy.zeros((H, W, 4), numpy.uint8)] * 5)),
            (TypeError, "references must be a sequence", dict(references=3)),
            (TypeError, "features must be float32", dict(features=numpy.zeros((2, 3, 4), numpy.float32))),
            (TypeError, "width must be an int", dict(width="64")),
            (ValueError, "steps must be from 1", dict(steps=0)),
            (ValueError, "seed must be from 0 to 2\\*\\*64 - 1", dict(seed=-1)),
            (ValueError, "seed must be from 0 to 2\\*\\*64 - 1", dict(seed=2 ** 64)),
            (TypeError, "seed must be an int", dict(seed=1.5)),
            (TypeError, "prompt must be a str", dict(prompt=b"bytes")),
            (ValueError, "NUL", dict(prompt="a\0b")),
            (TypeError, "progress must be callable", dict(progress=3)),
            (ValueError, "format must be", dict(format="rgb16")),
            (TypeError, "invalid keyword", dict(colour="red")),
        ]
        for error, pattern, kwargs in cases:
            with self.subTest(**{k: repr(v)[:40] for k, v in kwargs.items()}):
                args = dict(prompt=PROMPT, width=W, height=H)
                if "out" in kwargs and "width" not in kwargs:
                    del args["width"], args["height"]
                if kwargs.get("prompt", "") is not PROMPT and "prompt" in kwargs:
                    args.pop("prompt")
                args.update(kwargs)
                if isinstance(kwargs.get("out"), numpy.ndarray) and "writable" in pattern:
                    args["out"].flags.writeable = False
                with self.assertRaisesRegex(error, pattern):
                    MODEL.generate(**args)


class Progress(unittest.TestCase):
    def test_calls(self):
        calls = []
        MODEL.generate(prompt="a new prompt for progress", width=W, height=H, steps=3,
                       progress=lambda *a: calls.append(a))
        stages = [c[0] for c in calls]
        self.assertEqual(calls[0], ("encode_prompt", 1, 1))
        self.assertEqual([c for c in calls if c[0] == "denoise"],
                         [("denoise", 1, 3), ("denoise", 2, 3), ("denoise", 3, 3)])
        self.assertEqual(stages[-1], "decode")
        self.assertEqual(calls[-1][1], calls[-1][2])  # the last tile always reported

    def test_exception_cancels(self):
        class Stop(Exception):
            pass
        seen = []

        def stop_at_2(stage, done, total):
            seen.append((stage, done))
            if stage == "denoise" and done == 2:
                raise Stop("user cancelled")
        try:
            MODEL.generate(prompt=PROMPT, width=W, height=H, steps=6, progress=stop_at_2)
            self.fail("not cancelled")
        except Stop as e:
            self.assertEqual(str(e), "user cancelled")
            tb, frames = e.__traceback__, []
            while tb:
                frames.append(tb.tb_frame.f_code.co_name)
                tb = tb.tb_next
            self.assertEqual(frames[-1], "stop_at_2")  # raised there, kept its traceback
        self.assertEqual(seen[-1], ("denoise", 2))  # not one step more
        self.assertNotIn("decode", [s for s, _ in seen])
        with self.assertRaises(Stop):
            MODEL.sample(prompt=PROMPT, width=W, height=H, steps=6, progress=stop_at_2)

        def stop_decode(stage, done, total):
            if stage == "decode":
                raise Stop("decode")
        latents = MODEL.sample(prompt=PROMPT, width=W, height=H, steps=1)
        with self.assertRaises(Stop):
            MODEL.decode(latents, progress=stop_decode)
        # The model is as good as before.
        self.assertEqual(numpy.asarray(MODEL.generate(prompt=PROMPT, width=W, height=H)).shape, (H, W, 3))

    def test_false_cancels(self):
        with self.assertRaises(_bonsai.BonsaiError) as e:
            MODEL.generate(prompt=PROMPT, width=W, height=H, progress=lambda s, d, t: False)
        self.assertIn("cancelled", str(e.exception))

    def test_gil_released(self):
        """Another Python thread runs while the engine computes."""
        done = threading.Event()
        spins = [0, 0]  # while computing, while in callbacks

        def work():
            MODEL.generate(prompt=PROMPT, width=256, height=256, steps=3)
            done.set()
        t = threading.Thread(target=work)
        t.start()
        start = time.monotonic()
        while not done.is_set():
            spins[0] += 1
        elapsed = time.monotonic() - start
        t.join()
        # Holding the GIL through the call would leave this thread a few
        # switch intervals (5 ms each) at the progress callbacks only.
        self.assertGreater(spins[0], 10000, f"{spins[0]} spins in {elapsed:.2f} s")

    def test_threads_agree(self):
        """Two Python threads generating with one model get what one gets."""
        expect = [numpy.asarray(MODEL.generate(prompt=PROMPT, width=W, height=H, seed=s, threads=1))
                  for s in (11, 12)]
        got = [None, None]

        def work(i):
            got[i] = numpy.asarray(MODEL.generate(prompt=PROMPT, width=W, height=H, seed=11 + i, threads=1))
        threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for e, g in zip(expect, got):
            numpy.testing.assert_array_equal(e, g)


class Flat(unittest.TestCase):
    def test_fifty_runs(self):
        """References, Python memory and process memory stay flat."""
        out = numpy.zeros((H, W, 3), numpy.float32)
        refs = [numpy.zeros((H, W, 4), numpy.uint8)]
        callback = lambda s, d, t: None  # noqa: E731

        def one(i):  # each kind of call in turn, one a run
            kind = i % 4
            if kind == 0:
                MODEL.generate(prompt=PROMPT, seed=i, steps=1, out=out, progress=callback)
            elif kind == 1:
                numpy.asarray(MODEL.sample(prompt=PROMPT, width=W, height=H, seed=i, steps=1))
            elif kind == 2:
                MODEL.edit(refs, prompt=PROMPT, seed=i, steps=1)
            else:
                with self.assertRaises(_bonsai.BonsaiError):
                    MODEL.generate(prompt=PROMPT, width=72, height=H)
        for i in range(8):  # warm: caches, allocator pools
            one(i)
        gc.collect()
        counts = [sys.getrefcount(x) for x in (MODEL, out, refs[0], callback, PROMPT)]
        rss = common.rss_bytes()
        tracemalloc.start()
        snapshot = tracemalloc.take_snapshot()
        for i in range(50):
            one(i)
        gc.collect()
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(snapshot, "filename"))
        tracemalloc.stop()
        rss_grown = common.rss_bytes() - rss
        print(f"50 runs: Python memory {grown:+d} bytes, RSS {rss_grown / 1e6:+.1f} MB", file=sys.stderr)
        self.assertEqual([sys.getrefcount(x) for x in (MODEL, out, refs[0], callback, PROMPT)], counts)
        self.assertLess(grown, 64 * 1024)
        if common.RSS_MEANINGFUL:
            self.assertLess(rss_grown, 1e6)


if __name__ == "__main__":
    unittest.main(verbosity=2)
