/* _bonsai.c — the CPython extension over libbonsai, for the ComfyUI node pack
 * and any Python host.
 *
 * Written against the Python C API alone (no numpy or torch headers): pixels
 * and tensors go in and out through the buffer protocol, so a torch tensor's
 * .numpy() view is read, or written, in place.  Every engine call runs with
 * the GIL released; the engine's progress callback takes the GIL back between
 * units of work to call the Python callback, and an exception raised there
 * cancels the work and comes out of the call.  Engine errors become
 * BonsaiError carrying the engine's message and its code.
 *
 * Objects:
 *   Model(path)   an open model (the engine shares it between opens)
 *   Tensor        float32 results (prompt features, latents), owning the
 *                 engine's array and exporting it without a copy
 *   Image         pixels the engine made when no output array was given
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "bonsai/bonsai.h"

#include <string.h>

/* Python callbacks are called at most this often for the fine-grained
 * stages (reference images, VAE tiles); every denoising step still calls,
 * as the step is where a user cancels. */
#define PROGRESS_INTERVAL_US 100000

/* Set once when the module is imported and never changed. */
static PyObject *bonsai_error_type;

/* ---- errors -------------------------------------------------------------- */

/* Raises BonsaiError(message) with .code = the engine's error code and takes
 * (frees) `error`.  Returns NULL for `return raise_gerror (e);`. */
static PyObject *
raise_gerror (GError *error)
{
  const char *message = error ? error->message : "the engine failed";
  int code = error && error->domain == BONSAI_ERROR ? error->code : -1;
  /* Messages may name files whose names are not UTF-8. */
  PyObject *text = PyUnicode_DecodeUTF8 (message, (Py_ssize_t) strlen (message), "replace");
  PyObject *exc = text ? PyObject_CallOneArg (bonsai_error_type, text) : NULL;
  Py_XDECREF (text);
  g_clear_error (&error);
  if (!exc)
    return NULL;
  PyObject *value = PyLong_FromLong (code);
  if (!value || PyObject_SetAttrString (exc, "code", value) < 0)
    {
      Py_XDECREF (value);
      Py_DECREF (exc);
      return NULL;
    }
  Py_DECREF (value);
  PyErr_SetObject (bonsai_error_type, exc);
  Py_DECREF (exc);
  return NULL;
}

/* ---- buffers ------------------------------------------------------------- */

/* Whether a buffer's struct format is a native float32 or uint8. */
static gboolean
format_is (const Py_buffer *view, char want)
{
  const char *f = view->format ? view->format : "B";
  if (f[0] == '@' || f[0] == '=' || (f[0] == '<' && G_BYTE_ORDER == G_LITTLE_ENDIAN))
    f++;
  return f[0] == want && f[1] == '\0';
}

/* A C-contiguous buffer of `obj`, or NULL with TypeError naming `what`. */
static gboolean
get_buffer (PyObject *obj, Py_buffer *view, gboolean writable, const char *what,
            const char *expect)
{
  int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
  if (PyObject_GetBuffer (obj, view, flags) == 0)
    return TRUE;
  PyErr_Clear ();
  PyErr_Format (PyExc_TypeError, "%s must be a C-contiguous%s array: %s, not %.100s",
                what, writable ? ", writable" : "", expect, Py_TYPE (obj)->tp_name);
  return FALSE;
}

/* A float32 tensor of `ndim` dimensions seen through a buffer: `t` borrows
 * the buffer's memory, so the view must outlive it. */
static gboolean
tensor_from_buffer (PyObject *obj, int ndim, const char *what, const char *expect,
                    Py_buffer *view, BonsaiTensor *t)
{
  if (!get_buffer (obj, view, FALSE, what, expect))
    return FALSE;
  if (view->ndim != ndim || !format_is (view, 'f') || view->itemsize != 4)
    {
      PyErr_Format (PyExc_TypeError, "%s must be %s, not a %d-dimensional array of '%s'",
                    what, expect, view->ndim, view->format ? view->format : "B");
      PyBuffer_Release (view);
      return FALSE;
    }
  memset (t, 0, sizeof *t);
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++)
    t->shape[i] = view->shape[i];
  t->data = view->buf;
  return TRUE;
}

#define PIXELS_EXPECTED "float32 [H, W, 3] in 0..1 or uint8 [H, W, 4] RGBA"

/* Pixels seen through a buffer as a BonsaiImage borrowing its memory. */
static gboolean
image_from_buffer (PyObject *obj, gboolean writable, const char *what,
                   Py_buffer *view, BonsaiImage *image)
{
  if (!get_buffer (obj, view, writable, what, PIXELS_EXPECTED))
    return FALSE;
  gboolean f32 = view->ndim == 3 && view->shape[2] == 3 && format_is (view, 'f')
                 && view->itemsize == 4;
  gboolean u8 = view->ndim == 3 && view->shape[2] == 4 && format_is (view, 'B')
                && view->itemsize == 1;
  if (!f32 && !u8)
    {
      PyErr_Format (PyExc_TypeError, "%s must be " PIXELS_EXPECTED
                    ", not a %d-dimensional array of '%s'%s", what, view->ndim,
                    view->format ? view->format : "B",
                    view->ndim == 4 ? " (give one image of a batch)" : "");
      PyBuffer_Release (view);
      return FALSE;
    }
  if (view->shape[0] > G_MAXINT / 16 || view->shape[1] > G_MAXINT / 16)
    {
      PyErr_Format (PyExc_ValueError, "%s is too large", what);
      PyBuffer_Release (view);
      return FALSE;
    }
  memset (image, 0, sizeof *image);
  image->height = (int) view->shape[0];
  image->width = (int) view->shape[1];
  image->format = f32 ? BONSAI_PIXEL_RGB_F32 : BONSAI_PIXEL_RGBA8;
  image->stride = (size_t) view->shape[1] * (f32 ? 12 : 4);
  image->pixels = view->buf;
  return TRUE;
}

/* ---- exported arrays ----------------------------------------------------- */

/* Fills `view` for an exporter whose memory is in C order (padded rows when
 * not `contiguous`), honouring what the consumer asked for in `flags`. */
static int
fill_view (Py_buffer *view, PyObject *exporter, void *buf, Py_ssize_t len,
           Py_ssize_t itemsize, const char *format, int ndim, Py_ssize_t *shape,
           Py_ssize_t *strides, gboolean contiguous, int flags)
{
  gboolean want_strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES;
  gboolean want_f = (flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS;
  gboolean want_any = (flags & (PyBUF_C_CONTIGUOUS | PyBUF_ANY_CONTIGUOUS) & ~PyBUF_STRIDES) != 0;
  if ((want_f && ndim > 1) || ((want_any || !want_strides) && !contiguous))
    {
      PyErr_SetString (PyExc_BufferError, contiguous ? "the array is in C order only"
                                                     : "the image's rows are padded: ask for strides");
      return -1;
    }
  view->obj = Py_NewRef (exporter);
  view->buf = buf;
  view->len = len;
  view->readonly = 0;
  view->itemsize = itemsize;
  view->format = (flags & PyBUF_FORMAT) ? (char *) format : NULL;
  if (flags & PyBUF_ND)
    {
      view->ndim = ndim;
      view->shape = shape;
    }
  else
    {
      view->ndim = 1;   /* a plain run of bytes */
      view->shape = NULL;
    }
  view->strides = want_strides ? strides : NULL;
  view->suboffsets = NULL;
  view->internal = NULL;
  return 0;
}

/* ---- Tensor -------------------------------------------------------------- */

typedef struct {
  PyObject_HEAD
  BonsaiTensor *tensor;          /* owned */
  Py_ssize_t shape[4], strides[4];
} TensorObject;

static PyTypeObject TensorType;

/* Wraps `tensor` (taken, freed on failure too). */
static PyObject *
tensor_wrap (BonsaiTensor *tensor)
{
  TensorObject *self = PyObject_New (TensorObject, &TensorType);
  if (!self)
    {
      bonsai_tensor_free (tensor);
      return NULL;
    }
  self->tensor = tensor;
  Py_ssize_t stride = sizeof (float);
  for (int i = tensor->ndim - 1; i >= 0; i--)
    {
      self->shape[i] = (Py_ssize_t) tensor->shape[i];
      self->strides[i] = stride;
      stride *= self->shape[i];
    }
  return (PyObject *) self;
}

static void
tensor_dealloc (TensorObject *self)
{
  bonsai_tensor_free (self->tensor);
  PyObject_Free (self);
}

static Py_ssize_t
tensor_count (const TensorObject *self)
{
  Py_ssize_t n = 1;
  for (int i = 0; i < self->tensor->ndim; i++)
    n *= self->shape[i];
  return n;
}

static int
tensor_getbuffer (TensorObject *self, Py_buffer *view, int flags)
{
  return fill_view (view, (PyObject *) self, self->tensor->data,
                    tensor_count (self) * (Py_ssize_t) sizeof (float), sizeof (float), "f",
                    self->tensor->ndim, self->shape, self->strides, TRUE, flags);
}

static PyBufferProcs tensor_buffer = { (getbufferproc) tensor_getbuffer, NULL };

static PyObject *
tensor_get_shape (TensorObject *self, void *closure)
{
  PyObject *t = PyTuple_New (self->tensor->ndim);
  for (int i = 0; t && i < self->tensor->ndim; i++)
    PyTuple_SET_ITEM (t, i, PyLong_FromSsize_t (self->shape[i]));
  return t;
}

static PyObject *
tensor_repr (TensorObject *self)
{
  PyObject *shape = tensor_get_shape (self, NULL);
  PyObject *r = shape ? PyUnicode_FromFormat ("<_bonsai.Tensor float32 %R>", shape) : NULL;
  Py_XDECREF (shape);
  return r;
}

static PyGetSetDef tensor_getset[] = {
  { "shape", (getter) tensor_get_shape, NULL, "The dimensions, outermost first.", NULL },
  { 0 },
};

static PyTypeObject TensorType = {
  PyVarObject_HEAD_INIT (NULL, 0)
  .tp_name = "_bonsai.Tensor",
  .tp_doc = "A float32 array the engine made (prompt features [L, D] or latents\n"
            "[C, H/16, W/16]).  It exports its memory through the buffer protocol:\n"
            "numpy.asarray(t) and torch.from_numpy(numpy.asarray(t)) share it.",
  .tp_basicsize = sizeof (TensorObject),
  .tp_flags = Py_TPFLAGS_DEFAULT,
  .tp_dealloc = (destructor) tensor_dealloc,
  .tp_repr = (reprfunc) tensor_repr,
  .tp_as_buffer = &tensor_buffer,
  .tp_getset = tensor_getset,
};

/* ---- Image --------------------------------------------------------------- */

typedef struct {
  PyObject_HEAD
  BonsaiImage *image;            /* owned */
  Py_ssize_t shape[3], strides[3];
} ImageObject;

static PyTypeObject ImageType;

static PyObject *
image_wrap (BonsaiImage *image)
{
  ImageObject *self = PyObject_New (ImageObject, &ImageType);
  if (!self)
    {
      bonsai_image_free (image);
      return NULL;
    }
  gboolean f32 = image->format == BONSAI_PIXEL_RGB_F32;
  self->image = image;
  self->shape[0] = image->height;
  self->shape[1] = image->width;
  self->shape[2] = f32 ? 3 : 4;
  self->strides[0] = (Py_ssize_t) image->stride;
  self->strides[1] = f32 ? 12 : 4;
  self->strides[2] = f32 ? 4 : 1;
  return (PyObject *) self;
}

static void
image_dealloc (ImageObject *self)
{
  bonsai_image_free (self->image);
  PyObject_Free (self);
}

static int
image_getbuffer (ImageObject *self, Py_buffer *view, int flags)
{
  gboolean f32 = self->image->format == BONSAI_PIXEL_RGB_F32;
  return fill_view (view, (PyObject *) self, self->image->pixels,
                    self->shape[0] * self->strides[0], f32 ? 4 : 1, f32 ? "f" : "B", 3,
                    self->shape, self->strides,
                    self->strides[0] == self->shape[1] * self->strides[1], flags);
}

static PyBufferProcs image_buffer = { (getbufferproc) image_getbuffer, NULL };

static PyObject *
image_get_width (ImageObject *self, void *closure)
{
  return PyLong_FromLong (self->image->width);
}

static PyObject *
image_get_height (ImageObject *self, void *closure)
{
  return PyLong_FromLong (self->image->height);
}

static PyObject *
image_get_shape (ImageObject *self, void *closure)
{
  return Py_BuildValue ("(nnn)", self->shape[0], self->shape[1], self->shape[2]);
}

static PyGetSetDef image_getset[] = {
  { "width", (getter) image_get_width, NULL, "Pixels a row.", NULL },
  { "height", (getter) image_get_height, NULL, "Rows.", NULL },
  { "shape", (getter) image_get_shape, NULL, "[H, W, 3] (float32) or [H, W, 4] (uint8).", NULL },
  { 0 },
};

static PyTypeObject ImageType = {
  PyVarObject_HEAD_INIT (NULL, 0)
  .tp_name = "_bonsai.Image",
  .tp_doc = "Pixels the engine made: float32 [H, W, 3] in 0..1 or uint8 [H, W, 4]\n"
            "RGBA, exported through the buffer protocol without a copy.",
  .tp_basicsize = sizeof (ImageObject),
  .tp_flags = Py_TPFLAGS_DEFAULT,
  .tp_dealloc = (destructor) image_dealloc,
  .tp_as_buffer = &image_buffer,
  .tp_getset = image_getset,
};

/* ---- progress ------------------------------------------------------------ */

static const char *const stage_names[] = {
  [BONSAI_STAGE_ENCODE_PROMPT] = "encode_prompt",
  [BONSAI_STAGE_ENCODE_IMAGES] = "encode_images",
  [BONSAI_STAGE_DENOISE] = "denoise",
  [BONSAI_STAGE_DECODE] = "decode",
};

/* Between the engine (GIL released) and the Python callback. */
typedef struct {
  PyObject *callable;     /* borrowed; None or NULL: only signals are checked */
  PyObject *raised;       /* the exception that stopped the work, or NULL */
  gint64 last_call;       /* monotonic µs */
} Progress;

/* Runs on the engine's working thread without the GIL. */
static gboolean
on_progress (BonsaiStage stage, int done, int total, gpointer data)
{
  Progress *p = data;
  gint64 now = g_get_monotonic_time ();
  gboolean always = stage == BONSAI_STAGE_DENOISE || stage == BONSAI_STAGE_ENCODE_PROMPT
                    || done == total;
  if (p->raised || (!always && now - p->last_call < PROGRESS_INTERVAL_US))
    return p->raised == NULL;
  p->last_call = now;

  PyGILState_STATE gil = PyGILState_Ensure ();
  gboolean go = PyErr_CheckSignals () == 0;  /* Ctrl-C in a script */
  if (go && p->callable && p->callable != Py_None)
    {
      PyObject *r = PyObject_CallFunction (p->callable, "sii", stage_names[stage], done, total);
      go = r != NULL;
      if (r == Py_False)
        {
          go = FALSE;
          PyErr_SetString (bonsai_error_type, "cancelled by the progress callback");
        }
      Py_XDECREF (r);
    }
  if (!go)
    {
#if PY_VERSION_HEX >= 0x030C0000
      p->raised = PyErr_GetRaisedException ();
#else
      PyObject *type, *value, *tb;
      PyErr_Fetch (&type, &value, &tb);
      PyErr_NormalizeException (&type, &value, &tb);
      if (tb)
        PyException_SetTraceback (value, tb);
      Py_XDECREF (type);
      Py_XDECREF (tb);
      p->raised = value;
#endif
    }
  PyGILState_Release (gil);
  return go;
}

/* After an engine call, with the GIL: the callback's exception if it
 * stopped the work, else BonsaiError from `error`.  Returns NULL. */
static PyObject *
raise_failure (Progress *p, GError *error)
{
  if (p->raised)
    {
      g_clear_error (&error);
#if PY_VERSION_HEX >= 0x030C0000
      PyErr_SetRaisedException (p->raised);
#else
      PyErr_Restore (Py_NewRef ((PyObject *) Py_TYPE (p->raised)), p->raised,
                     PyException_GetTraceback (p->raised));
#endif
      p->raised = NULL;
      return NULL;
    }
  return raise_gerror (error);
}

static gboolean
check_callable (PyObject *progress)
{
  if (!progress || progress == Py_None || PyCallable_Check (progress))
    return TRUE;
  PyErr_Format (PyExc_TypeError, "progress must be callable(stage, done, total) or None, not %.100s",
                Py_TYPE (progress)->tp_name);
  return FALSE;
}

/* ---- argument helpers ---------------------------------------------------- */

/* An int from `lo` to `hi`, or FALSE with TypeError/ValueError naming it. */
static gboolean
int_arg (PyObject *obj, const char *name, long lo, long hi, int *out)
{
  if (!obj)
    return TRUE;
  if (!PyLong_Check (obj) || PyBool_Check (obj))
    {
      PyErr_Format (PyExc_TypeError, "%s must be an int, not %.100s", name, Py_TYPE (obj)->tp_name);
      return FALSE;
    }
  int overflow;
  long v = PyLong_AsLongAndOverflow (obj, &overflow);
  if (v == -1 && PyErr_Occurred ())
    return FALSE;
  if (overflow || v < lo || v > hi)
    {
      PyErr_Format (PyExc_ValueError, "%s must be from %ld to %ld, not %S", name, lo, hi, obj);
      return FALSE;
    }
  *out = (int) v;
  return TRUE;
}

static gboolean
seed_arg (PyObject *obj, guint64 *out)
{
  if (!obj)
    return TRUE;
  if (!PyLong_Check (obj) || PyBool_Check (obj))
    {
      PyErr_Format (PyExc_TypeError, "seed must be an int, not %.100s", Py_TYPE (obj)->tp_name);
      return FALSE;
    }
  unsigned long long v = PyLong_AsUnsignedLongLong (obj);
  if (v == (unsigned long long) -1 && PyErr_Occurred ())
    {
      PyErr_Format (PyExc_ValueError, "seed must be from 0 to 2**64 - 1, not %S", obj);
      return FALSE;
    }
  *out = v;
  return TRUE;
}

/* "float" → RGB_F32, "rgba8" → RGBA8. */
static gboolean
format_arg (const char *name, BonsaiPixelFormat *out)
{
  if (!name || !strcmp (name, "float"))
    *out = BONSAI_PIXEL_RGB_F32;
  else if (!strcmp (name, "rgba8"))
    *out = BONSAI_PIXEL_RGBA8;
  else
    {
      PyErr_Format (PyExc_ValueError, "format must be 'float' or 'rgba8', not '%s'", name);
      return FALSE;
    }
  return TRUE;
}

/* ---- Model --------------------------------------------------------------- */

typedef struct {
  PyObject_HEAD
  BonsaiModel *model;   /* a reference, NULL before __init__ succeeds */
  PyObject *path;       /* as given */
} ModelObject;

static void
model_dealloc (ModelObject *self)
{
  if (self->model)
    {
      /* The last reference unmaps the weights: not under the GIL. */
      BonsaiModel *m = self->model;
      Py_BEGIN_ALLOW_THREADS
      bonsai_model_unref (m);
      Py_END_ALLOW_THREADS
    }
  Py_XDECREF (self->path);
  Py_TYPE (self)->tp_free ((PyObject *) self);
}

static int
model_init (ModelObject *self, PyObject *args, PyObject *kwargs)
{
  static char *kwlist[] = { "path", NULL };
  PyObject *bytes = NULL;
  if (!PyArg_ParseTupleAndKeywords (args, kwargs, "O&:Model", kwlist, PyUnicode_FSConverter, &bytes))
    return -1;
  GError *error = NULL;
  BonsaiModel *model;
  const char *path = PyBytes_AS_STRING (bytes);
  Py_BEGIN_ALLOW_THREADS
  model = bonsai_model_open (path, &error);
  Py_END_ALLOW_THREADS
  if (!model)
    {
      Py_DECREF (bytes);
      raise_gerror (error);
      return -1;
    }
  if (self->model)  /* __init__ called again */
    bonsai_model_unref (self->model);
  self->model = model;
  Py_XSETREF (self->path, PyUnicode_DecodeFSDefault (path));
  Py_DECREF (bytes);
  return self->path ? 0 : -1;
}

static gboolean
model_ready (ModelObject *self)
{
  if (self->model)
    return TRUE;
  PyErr_SetString (PyExc_ValueError, "the model is not open (Model.__init__ failed or was not called)");
  return FALSE;
}

static PyObject *
model_repr (ModelObject *self)
{
  return PyUnicode_FromFormat ("<_bonsai.Model %R>", self->path ? self->path : Py_None);
}

static PyObject *
model_get_path (ModelObject *self, void *closure)
{
  return Py_NewRef (self->path ? self->path : Py_None);
}

static PyObject *
model_get_size_multiple (ModelObject *self, void *closure)
{
  if (!model_ready (self))
    return NULL;
  return PyLong_FromLong (bonsai_model_size_multiple (self->model));
}

static PyObject *
model_encode_prompt (ModelObject *self, PyObject *args, PyObject *kwargs)
{
  static char *kwlist[] = { "prompt", "threads", NULL };
  const char *prompt;
  int threads = 0;
  if (!PyArg_ParseTupleAndKeywords (args, kwargs, "s|$i:encode_prompt", kwlist, &prompt, &threads)
      || !model_ready (self))
    return NULL;
  GError *error = NULL;
  BonsaiTensor *t;
  Py_BEGIN_ALLOW_THREADS
  t = bonsai_encode_prompt (self->model, prompt, threads, &error);
  Py_END_ALLOW_THREADS
  return t ? tensor_wrap (t) : raise_gerror (error);
}

static PyObject *
model_make_noise (ModelObject *self, PyObject *args, PyObject *kwargs)
{
  static char *kwlist[] = { "width", "height", "seed", NULL };
  int width, height;
  PyObject *seed_obj;
  guint64 seed = 0;
  if (!PyArg_ParseTupleAndKeywords (args, kwargs, "iiO:make_noise", kwlist, &width, &height, &seed_obj)
      || !seed_arg (seed_obj, &seed) || !model_ready (self))
    return NULL;
  GError *error = NULL;
  BonsaiTensor *t;
  Py_BEGIN_ALLOW_THREADS
  t = bonsai_make_noise (self->model, width, height, seed, &error);
  Py_END_ALLOW_THREADS
  return t ? tensor_wrap (t) : raise_gerror (error);
}

/* One request's arguments, the buffers it borrows, and its progress. */
typedef struct {
  BonsaiRequest req;
  PyObject *prompt_bytes;
  Py_buffer features_view, latents_view;
  BonsaiTensor features, latents;
  Py_buffer ref_views[BONSAI_MAX_REFERENCES];
  BonsaiImage refs[BONSAI_MAX_REFERENCES];
  const BonsaiImage *ref_ptrs[BONSAI_MAX_REFERENCES];
  gboolean have_features, have_latents;
  Py_buffer out_view;          /* the caller's output array, when given */
  BonsaiImage out;
  gboolean have_out;
  Progress progress;
} Call;

static void
call_clear (Call *c)
{
  Py_XDECREF (c->prompt_bytes);
  if (c->have_features)
    PyBuffer_Release (&c->features_view);
  if (c->have_latents)
    PyBuffer_Release (&c->latents_view);
  for (int k = 0; k < c->req.n_references; k++)
    PyBuffer_Release (&c->ref_views[k]);
  if (c->have_out)
    PyBuffer_Release (&c->out_view);
  Py_CLEAR (c->progress.raised);
}

/* Fills c->req.references from a sequence of pixel arrays. */
static gboolean
call_references (Call *c, PyObject *seq)
{
  if (!seq || seq == Py_None)
    return TRUE;
  PyObject *fast = PySequence_Fast (seq, "references must be a sequence of images");
  if (!fast)
    return FALSE;
  Py_ssize_t n = PySequence_Fast_GET_SIZE (fast);
  gboolean ok = TRUE;
  if (n > BONSAI_MAX_REFERENCES)
    {
      PyErr_Format (PyExc_ValueError, "at most %d reference images can be given, not %zd",
                    BONSAI_MAX_REFERENCES, n);
      ok = FALSE;
    }
  for (Py_ssize_t k = 0; ok && k < n; k++)
    {
      char what[32];
      g_snprintf (what, sizeof what, "reference image %d", (int) k + 1);
      ok = image_from_buffer (PySequence_Fast_GET_ITEM (fast, k), FALSE, what,
                              &c->ref_views[k], &c->refs[k]);
      if (ok)
        {
          c->ref_ptrs[k] = &c->refs[k];
          c->req.n_references = (int) k + 1;
        }
    }
  Py_DECREF (fast);
  c->req.references = c->ref_ptrs;
  return ok;
}

/* Parses the keyword arguments of sample, generate and edit. */
static gboolean
call_parse (Call *c, PyObject *args, PyObject *kwargs, const char *fmt, char **kwlist,
            PyObject **references, PyObject **out, BonsaiPixelFormat *format)
{
  PyObject *prompt = NULL, *features = NULL, *latents = NULL, *progress = NULL;
  PyObject *width = NULL, *height = NULL, *steps = NULL, *seed = NULL, *threads = NULL;
  const char *format_name = NULL;
  memset (c, 0, sizeof *c);
  bonsai_request_init (&c->req);
  c->req.width = c->req.height = BONSAI_SIZE_AUTO;
  /* kwlist: references, prompt, features, width, height, seed, steps,
   * latents, threads, progress, out, format (the last two for images). */
  if (!PyArg_ParseTupleAndKeywords (args, kwargs, fmt, kwlist, references, &prompt, &features,
                                    &width, &height, &seed, &steps, &latents, &threads,
                                    &progress, out, &format_name))
    return FALSE;
  if (format && !format_arg (format_name, format))
    return FALSE;
  /* Sizes the engine refuses are left to its messages. */
  if (!int_arg (width, "width", 0, G_MAXINT, &c->req.width)
      || !int_arg (height, "height", 0, G_MAXINT, &c->req.height)
      || !int_arg (steps, "steps", 1, BONSAI_MAX_STEPS, &c->req.steps)
      || !int_arg (threads, "threads", 0, 4096, &c->req.threads)
      || !seed_arg (seed, &c->req.seed) || !check_callable (progress))
    return FALSE;
  /* 0: decided by the engine (the first reference's size, else 1024). */
  if (c->req.width == 0)
    c->req.width = BONSAI_SIZE_AUTO;
  if (c->req.height == 0)
    c->req.height = BONSAI_SIZE_AUTO;
  c->progress.callable = progress;
  if (prompt && prompt != Py_None)
    {
      if (!PyUnicode_Check (prompt))
        {
          PyErr_Format (PyExc_TypeError, "prompt must be a str, not %.100s", Py_TYPE (prompt)->tp_name);
          return FALSE;
        }
      c->prompt_bytes = PyUnicode_AsUTF8String (prompt);
      if (!c->prompt_bytes)
        return FALSE;
      if ((size_t) PyBytes_GET_SIZE (c->prompt_bytes) != strlen (PyBytes_AS_STRING (c->prompt_bytes)))
        {
          PyErr_SetString (PyExc_ValueError, "prompt must not contain NUL characters");
          return FALSE;
        }
      c->req.prompt = PyBytes_AS_STRING (c->prompt_bytes);
    }
  if (features && features != Py_None)
    {
      if (!tensor_from_buffer (features, 2, "features", "float32 [L, D]", &c->features_view,
                               &c->features))
        return FALSE;
      c->have_features = TRUE;
      c->req.features = &c->features;
    }
  if (latents && latents != Py_None)
    {
      if (!tensor_from_buffer (latents, 3, "latents", "float32 [C, H/16, W/16]",
                               &c->latents_view, &c->latents))
        return FALSE;
      c->have_latents = TRUE;
      c->req.latents = &c->latents;
    }
  return call_references (c, *references);
}

/* The caller's output array: its size is the image's. */
static gboolean
call_out (Call *c, PyObject *out, BonsaiPixelFormat *format)
{
  if (!out || out == Py_None)
    return TRUE;
  if (!image_from_buffer (out, TRUE, "out", &c->out_view, &c->out))
    return FALSE;
  c->have_out = TRUE;
  *format = c->out.format;
  if ((c->req.width != BONSAI_SIZE_AUTO && c->req.width != c->out.width)
      || (c->req.height != BONSAI_SIZE_AUTO && c->req.height != c->out.height))
    {
      PyErr_Format (PyExc_ValueError, "out is %dx%d but the request asks for %dx%d",
                    c->out.width, c->out.height, c->req.width, c->req.height);
      return FALSE;
    }
  c->req.width = c->out.width;
  c->req.height = c->out.height;
  return TRUE;
}

/* Copies `image` into the output array (GIL released by the caller). */
static void
copy_pixels (const BonsaiImage *image, BonsaiImage *out)
{
  size_t row = (size_t) image->width * (image->format == BONSAI_PIXEL_RGB_F32 ? 12 : 4);
  for (int y = 0; y < image->height; y++)
    memcpy ((char *) out->pixels + (size_t) y * out->stride,
            (const char *) image->pixels + (size_t) y * image->stride, row);
}

/* Returns the caller's array, or a new Image, for `image` (taken). */
static PyObject *
finish_image (Call *c, PyObject *out, BonsaiImage *image)
{
  if (!c->have_out)
    return image_wrap (image);
  if (image->width != c->out.width || image->height != c->out.height)
    {
      PyErr_Format (PyExc_ValueError, "the engine made a %dx%d image for a %dx%d out array",
                    image->width, image->height, c->out.width, c->out.height);
      bonsai_image_free (image);
      return NULL;
    }
  Py_BEGIN_ALLOW_THREADS
  copy_pixels (image, &c->out);
  Py_END_ALLOW_THREADS
  bonsai_image_free (image);
  return Py_NewRef (out);
}

static PyObject *
model_sample (ModelObject *self, PyObject *args, PyObject *kwargs)
{
  static char *kwlist[] = { "references", "prompt", "features", "width", "height", "seed",
                            "steps", "latents", "threads", "progress", NULL };
  Call c;
  PyObject *references = NULL, *result = NULL;
  if (call_parse (&c, args, kwargs, "|$OOOOOOOOOO:sample", kwlist, &references, NULL, NULL)
      && model_ready (self))
    {
      GError *error = NULL;
      BonsaiTensor *t;
      Py_BEGIN_ALLOW_THREADS
      t = bonsai_sample (self->model, &c.req, on_progress, &c.progress, &error);
      Py_END_ALLOW_THREADS
      result = t ? tensor_wrap (t) : raise_failure (&c.progress, error);
    }
  call_clear (&c);
  return result;
}

/* generate and edit: `need_refs` makes at least one reference required. */
static PyObject *
generate (ModelObject *self, PyObject *args, PyObject *kwargs, const char *fmt,
          gboolean need_refs)
{
  static char *kwlist[] = { "references", "prompt", "features", "width", "height", "seed",
                            "steps", "latents", "threads", "progress", "out", "format", NULL };
  Call c;
  PyObject *references = NULL, *out = NULL, *result = NULL;
  BonsaiPixelFormat format = BONSAI_PIXEL_RGB_F32;
  if (call_parse (&c, args, kwargs, fmt, kwlist, &references, &out, &format)
      && call_out (&c, out, &format) && model_ready (self))
    {
      if (need_refs && c.req.n_references == 0)
        PyErr_SetString (PyExc_ValueError, "edit needs at least one reference image");
      else
        {
          GError *error = NULL;
          BonsaiImage *image = NULL;
          gboolean ok;
          c.req.format = format;
          Py_BEGIN_ALLOW_THREADS
          ok = bonsai_generate (self->model, &c.req, on_progress, &c.progress, &image, &error);
          Py_END_ALLOW_THREADS
          result = ok ? finish_image (&c, out, image) : raise_failure (&c.progress, error);
        }
    }
  call_clear (&c);
  return result;
}

static PyObject *
model_generate (ModelObject *self, PyObject *args, PyObject *kwargs)
{
  return generate (self, args, kwargs, "|$OOOOOOOOOOOs:generate", FALSE);
}

static PyObject *
model_edit (ModelObject *self, PyObject *args, PyObject *kwargs)
{
  return generate (self, args, kwargs, "O|$OOOOOOOOOOs:edit", TRUE);
}

static PyObject *
model_decode (ModelObject *self, PyObject *args, PyObject *kwargs)
{
  static char *kwlist[] = { "latents", "out", "format", "threads", "progress", NULL };
  PyObject *latents_obj, *out = NULL, *progress = NULL, *threads_obj = NULL, *result = NULL;
  const char *format_name = NULL;
  if (!PyArg_ParseTupleAndKeywords (args, kwargs, "O|$OsOO:decode", kwlist, &latents_obj, &out,
                                    &format_name, &threads_obj, &progress))
    return NULL;
  Call c;
  memset (&c, 0, sizeof c);
  BonsaiPixelFormat format;
  int threads = 0;
  if (format_arg (format_name, &format) && int_arg (threads_obj, "threads", 0, 4096, &threads)
      && check_callable (progress) && model_ready (self)
      && tensor_from_buffer (latents_obj, 3, "latents", "float32 [C, H/16, W/16]",
                             &c.latents_view, &c.latents))
    {
      c.have_latents = TRUE;
      c.progress.callable = progress;
      c.req.width = c.req.height = BONSAI_SIZE_AUTO;
      if (call_out (&c, out, &format))
        {
          GError *error = NULL;
          BonsaiImage *image;
          Py_BEGIN_ALLOW_THREADS
          image = bonsai_decode (self->model, &c.latents, format, threads, on_progress,
                                 &c.progress, &error);
          Py_END_ALLOW_THREADS
          result = image ? finish_image (&c, out, image) : raise_failure (&c.progress, error);
        }
    }
  call_clear (&c);
  return result;
}

#define REQUEST_DOC \
  "prompt (str) or features (float32 [L, D], e.g. from encode_prompt); width and\n" \
  "height (0: the first reference's size, else 1024; multiples of size_multiple);\n" \
  "seed (0 .. 2**64-1, picks the noise); steps (default 4); references: up to 4\n" \
  "images to edit from (float32 [H, W, 3] in 0..1 or uint8 [H, W, 4]); latents:\n" \
  "initial latents in place of the seeded noise; threads (0: one per processor);\n" \
  "progress: callable(stage, done, total) between units of work; an exception it\n" \
  "raises stops the work and comes out of this call, and so does returning False\n" \
  "(BonsaiError, code ERROR_CANCELLED).\n"

static PyMethodDef model_methods[] = {
  { "encode_prompt", (PyCFunction) (void (*) (void)) model_encode_prompt, METH_VARARGS | METH_KEYWORDS,
    "encode_prompt(prompt, *, threads=0) -> Tensor [512, D]\n\n"
    "The prompt's features, through the text encoder (the engine keeps recent\n"
    "prompts, so encoding one again costs nothing)." },
  { "make_noise", (PyCFunction) (void (*) (void)) model_make_noise, METH_VARARGS | METH_KEYWORDS,
    "make_noise(width, height, seed) -> Tensor [C, H/16, W/16]\n\n"
    "The seeded noise a generation starts from, the same on every host." },
  { "sample", (PyCFunction) (void (*) (void)) model_sample, METH_VARARGS | METH_KEYWORDS,
    "sample(*, prompt=None, features=None, width=0, height=0, seed=0, steps=4,\n"
    "       references=None, latents=None, threads=0, progress=None) -> Tensor\n\n"
    "Denoises and returns the final latents [C, H/16, W/16] (normalised and\n"
    "patchified, ComfyUI's FLUX.2 latent layout).\n" REQUEST_DOC },
  { "decode", (PyCFunction) (void (*) (void)) model_decode, METH_VARARGS | METH_KEYWORDS,
    "decode(latents, *, out=None, format='float', threads=0, progress=None)\n\n"
    "Latents from sample() to pixels, written into `out` (float32 [H, W, 3] or\n"
    "uint8 [H, W, 4], returned) or into a new Image of `format` ('float' or\n"
    "'rgba8')." },
  { "generate", (PyCFunction) (void (*) (void)) model_generate, METH_VARARGS | METH_KEYWORDS,
    "generate(*, prompt=None, features=None, width=0, height=0, seed=0, steps=4,\n"
    "         references=None, latents=None, threads=0, progress=None, out=None,\n"
    "         format='float')\n\n"
    "Prompt to pixels: sample then decode.  The image is written into `out`\n"
    "(whose shape gives the size, returned) or into a new Image.\n" REQUEST_DOC },
  { "edit", (PyCFunction) (void (*) (void)) model_edit, METH_VARARGS | METH_KEYWORDS,
    "edit(references, *, prompt=None, ...) as generate, with at least one\n"
    "reference image; the size defaults to the first reference's." },
  { 0 },
};

static PyGetSetDef model_getset[] = {
  { "path", (getter) model_get_path, NULL, "The path or name the model was opened from.", NULL },
  { "size_multiple", (getter) model_get_size_multiple, NULL,
    "Image widths and heights must be multiples of this (16 for klein).", NULL },
  { 0 },
};

static PyTypeObject ModelType = {
  PyVarObject_HEAD_INIT (NULL, 0)
  .tp_name = "_bonsai.Model",
  .tp_doc = "Model(path)\n\nA Bonsai Image model opened from a release folder (or a name the\n"
            "engine resolves).  The engine shares one open model between every\n"
            "Model of the same files; it may be used from several threads at once.",
  .tp_basicsize = sizeof (ModelObject),
  .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
  .tp_new = PyType_GenericNew,
  .tp_init = (initproc) model_init,
  .tp_dealloc = (destructor) model_dealloc,
  .tp_repr = (reprfunc) model_repr,
  .tp_methods = model_methods,
  .tp_getset = model_getset,
};

/* ---- module -------------------------------------------------------------- */

static PyObject *
module_version (PyObject *module, PyObject *unused)
{
  return PyUnicode_FromString (bonsai_version ());
}

static PyObject *
module_default_model (PyObject *module, PyObject *unused)
{
  char *name = bonsai_model_default_name ();
  PyObject *result = PyUnicode_FromString (name);
  g_free (name);
  return result;
}

static PyObject *
module_cpu_isa (PyObject *module, PyObject *unused)
{
  return PyUnicode_FromString (bonsai_cpu_isa ());
}

static PyObject *
module_cache_stats (PyObject *module, PyObject *unused)
{
  BonsaiCacheStats st;
  bonsai_cache_stats (&st);
  return Py_BuildValue ("{sKsKsKsKsIsI}", "model_opens", (unsigned long long) st.model_opens,
                        "model_hits", (unsigned long long) st.model_hits,
                        "prompt_encodes", (unsigned long long) st.prompt_encodes,
                        "prompt_hits", (unsigned long long) st.prompt_hits,
                        "models", st.models, "prompts", st.prompts);
}

static PyObject *
module_set_prompt_cache_capacity (PyObject *module, PyObject *arg)
{
  unsigned long n = PyLong_AsUnsignedLong (arg);
  if (n == (unsigned long) -1 && PyErr_Occurred ())
    return NULL;
  if (n > G_MAXUINT)
    {
      PyErr_SetString (PyExc_ValueError, "the capacity is too large");
      return NULL;
    }
  bonsai_cache_set_prompt_capacity ((guint) n);
  Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
  { "cache_stats", module_cache_stats, METH_NOARGS,
    "cache_stats() -> dict\n\nThe engine's process-wide caches: model_opens and model_hits\n"
    "(opens that loaded files, opens answered by a loaded model), prompt_encodes\n"
    "and prompt_hits (prompts run through the text encoder, prompts answered\n"
    "from the cache), and models and prompts held now." },
  { "set_prompt_cache_capacity", module_set_prompt_cache_capacity, METH_O,
    "set_prompt_cache_capacity(n)\n\nHow many prompts' features the engine keeps (0: none)." },
  { "version", module_version, METH_NOARGS, "version() -> the engine's version string" },
  { "default_model", module_default_model, METH_NOARGS,
    "default_model() -> the model opened when none is named: the real default\n"
    "('ternary') when installed, else the bundled Bonsai Shapes model 'shapes'" },
  { "cpu_isa", module_cpu_isa, METH_NOARGS,
    "cpu_isa() -> the instruction set the CPU kernels use ('avx512', 'avx2', 'scalar')" },
  { 0 },
};

static struct PyModuleDef bonsai_module = {
  PyModuleDef_HEAD_INIT,
  .m_name = "_bonsai",
  .m_doc = "Bonsai Image's engine (libbonsai) for Python: Model, Tensor, Image, BonsaiError.",
  .m_size = -1,
  .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__bonsai (void)
{
  static const struct {
    const char *name;
    int code;
  } codes[] = {
    { "ERROR_INVALID_INPUT", BONSAI_ERROR_INVALID_INPUT },
    { "ERROR_FORMAT", BONSAI_ERROR_FORMAT },
    { "ERROR_NOT_FOUND", BONSAI_ERROR_NOT_FOUND },
    { "ERROR_IO", BONSAI_ERROR_IO },
    { "ERROR_NETWORK", BONSAI_ERROR_NETWORK },
    { "ERROR_CHECKSUM", BONSAI_ERROR_CHECKSUM },
    { "ERROR_CANCELLED", BONSAI_ERROR_CANCELLED },
    { "ERROR_OUT_OF_MEMORY", BONSAI_ERROR_OUT_OF_MEMORY },
    { "ERROR_BACKEND", BONSAI_ERROR_BACKEND },
  };
  if (PyType_Ready (&ModelType) < 0 || PyType_Ready (&TensorType) < 0
      || PyType_Ready (&ImageType) < 0)
    return NULL;
  PyObject *m = PyModule_Create (&bonsai_module);
  if (!m)
    return NULL;
  if (!bonsai_error_type)
    bonsai_error_type = PyErr_NewExceptionWithDoc (
      "_bonsai.BonsaiError",
      "An engine error: str() is the engine's message; .code is one of the\n"
      "ERROR_* constants (-1 when the code is unknown).", NULL, NULL);
  if (!bonsai_error_type
      || PyModule_AddObjectRef (m, "BonsaiError", bonsai_error_type) < 0
      || PyModule_AddObjectRef (m, "Model", (PyObject *) &ModelType) < 0
      || PyModule_AddObjectRef (m, "Tensor", (PyObject *) &TensorType) < 0
      || PyModule_AddObjectRef (m, "Image", (PyObject *) &ImageType) < 0)
    {
      Py_DECREF (m);
      return NULL;
    }
  for (size_t i = 0; i < G_N_ELEMENTS (codes); i++)
    if (PyModule_AddIntConstant (m, codes[i].name, codes[i].code) < 0)
      {
        Py_DECREF (m);
        return NULL;
      }
  return m;
}
