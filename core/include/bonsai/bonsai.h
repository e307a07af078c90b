/* bonsai.h — the public API of libbonsai, the engine behind Bonsai Image.
 *
 * This is the only header a host (CLI, GIMP plug-in, Python extension)
 * includes.  Every function that can fail returns FALSE or NULL and sets a
 * GError in the BONSAI_ERROR domain; the caller owns the error.  Ownership of
 * every returned object is stated next to the function.
 */
#ifndef BONSAI_H
#define BONSAI_H

#include <glib.h>

G_BEGIN_DECLS

#if defined(BONSAI_COMPILATION) || defined(BONSAI_STATIC)
#define BONSAI_API __attribute__ ((visibility ("default")))
#else
#define BONSAI_API
#endif

#define BONSAI_VERSION_STRING "0.1.0"

/* ---- Errors ------------------------------------------------------------ */

#define BONSAI_ERROR (bonsai_error_quark ())
BONSAI_API GQuark bonsai_error_quark (void);

typedef enum {
  BONSAI_ERROR_INVALID_INPUT, /* a request or argument the engine cannot accept */
  BONSAI_ERROR_FORMAT,        /* a file that is damaged or not what it claims  */
  BONSAI_ERROR_NOT_FOUND,     /* a file, tensor or model that does not exist   */
  BONSAI_ERROR_IO,            /* the operating system refused a read or write  */
  BONSAI_ERROR_NETWORK,       /* a download failed                             */
  BONSAI_ERROR_CHECKSUM,      /* a file's sha256 differs from the manifest     */
  BONSAI_ERROR_CANCELLED,     /* the caller cancelled the work                 */
  BONSAI_ERROR_OUT_OF_MEMORY, /* an allocation failed                          */
  BONSAI_ERROR_BACKEND,       /* a compute backend failed or is unavailable    */
} BonsaiError;

/* ---- Logging ----------------------------------------------------------- */

/* The engine logs through GLib (log domain "bonsai"): warnings always,
 * informational and debug lines when enabled here or with
 * G_MESSAGES_DEBUG=bonsai. */
BONSAI_API void bonsai_log_set_verbose (gboolean verbose);

/* ---- Version and CPU --------------------------------------------------- */

/* Static strings; do not free. */
BONSAI_API const char *bonsai_version (void);
/* The instruction set the CPU kernels chose for this machine:
 * "avx512", "avx2" or "scalar".  BONSAI_CPU_ISA=scalar|avx2|avx512 caps it. */
BONSAI_API const char *bonsai_cpu_isa (void);

/* ---- Backends ---------------------------------------------------------- */

typedef enum {
  BONSAI_BACKEND_AUTO, /* CUDA when its module, a driver and a GPU are
                          there; otherwise the CPU (logged once)         */
  BONSAI_BACKEND_CPU,  /* the built-in CPU kernels                        */
  BONSAI_BACKEND_CUDA, /* the CUDA module (libbonsai-cuda), or an error   */
} BonsaiBackend;

/* Chooses the backend for the whole process (default: BONSAI_BACKEND=
 * auto|cpu|cuda from the environment, else AUTO).  Choosing CUDA loads the
 * module and opens the first GPU now, and fails with BONSAI_ERROR_BACKEND
 * saying why ("no CUDA device", no driver, no module) when it cannot; the
 * choice is then left unchanged.  With CUDA, bonsai_generate() and
 * bonsai_sample() run the transformer on the GPU (its weights resident
 * there, uploaded on the model's first use and kept with it); the text
 * encoder, the noise and the VAE stay on the CPU.  AUTO still runs
 * everything on the CPU: it will pick CUDA once the CUDA path has been
 * checked against the CPU on a device (issue 9). */
BONSAI_API gboolean bonsai_backend_select (BonsaiBackend backend,
                                           GError **error);
/* The device the selected backend resolves to: "cpu", or "cuda: " and the
 * GPU's name.  A new string the caller frees with g_free(); a CUDA device
 * that cannot be opened reads "cpu" (AUTO) or sets BONSAI_ERROR_BACKEND. */
BONSAI_API char *bonsai_backend_describe (GError **error);
/* Parses "auto", "cpu" or "cuda" (any case); FALSE for anything else. */
BONSAI_API gboolean bonsai_backend_from_string (const char *name,
                                                BonsaiBackend *out);

/* ---- Images ------------------------------------------------------------ */

typedef enum {
  BONSAI_PIXEL_RGBA8,   /* 4 bytes a pixel, R G B A; outputs have A = 255  */
  BONSAI_PIXEL_RGB_F32, /* 3 floats a pixel, R G B in [0, 1]               */
} BonsaiPixelFormat;

/* ---- Precision ---------------------------------------------------------- */

/* How the CPU multiplies activations by the transformer's binary and
 * ternary weights and, for BF16, by the VAE's bf16 convolution weights
 * (the weights themselves are always used exactly). */
typedef enum {
  BONSAI_PRECISION_AUTO,   /* LUT where the CPU has AVX-512 VBMI and VNNI,
                              else BF16 where it has AVX-512 BF16, else
                              EXACT (README: Precision)                    */
  BONSAI_PRECISION_EXACT,  /* fp32 activations, the reference arithmetic   */
  BONSAI_PRECISION_BF16,   /* activations rounded to bf16, fp32 sums       */
  BONSAI_PRECISION_INT8,   /* activations rounded to int8 per token and
                              weight group, exact integer sums             */
  BONSAI_PRECISION_LUT,    /* binary weights by table lookup: activations
                              as INT8, sums of 4 rounded to 4 int8 steps;
                              other weights as BF16 (needs AVX-512 VBMI)   */
} BonsaiPrecision;

/* "auto", "exact", "bf16", "int8" or "lut"; FALSE for anything else. */
BONSAI_API gboolean bonsai_precision_from_string (const char *name,
                                                  BonsaiPrecision *out);

/* Pixels in row-major order, top row first.  Every BonsaiImage the library
 * returns owns its pixels and is freed with bonsai_image_free(). */
typedef struct {
  int width;
  int height;
  BonsaiPixelFormat format;
  size_t stride;  /* bytes from the start of one row to the next */
  void *pixels;
} BonsaiImage;

/* A new zeroed image (A = 255 for RGBA8), or NULL with INVALID_INPUT (size
 * not positive or too large) or OUT_OF_MEMORY.  Caller owns it. */
BONSAI_API BonsaiImage *bonsai_image_new (int width, int height,
                                          BonsaiPixelFormat format,
                                          GError **error);
BONSAI_API void bonsai_image_free (BonsaiImage *image);
/* Reads a PNG of any colour type and depth as RGBA8.  Caller owns it. */
BONSAI_API BonsaiImage *bonsai_image_load_png (const char *path,
                                               GError **error);
/* Writes 8-bit RGB (RGBA when some pixel is not opaque).  The file appears
 * under `path` only when complete: it is written to a temporary file beside
 * it and renamed. */
BONSAI_API gboolean bonsai_image_save_png (const BonsaiImage *image,
                                           const char *path, GError **error);

/* ---- Tensors ----------------------------------------------------------- */

/* A dense float32 array in C order: prompt features [L, D] or latents
 * [C, H, W].  Owned by whoever received it; free with bonsai_tensor_free(). */
typedef struct {
  int ndim;          /* 1 … 4 */
  gint64 shape[4];
  float *data;
} BonsaiTensor;

/* A new zeroed tensor, or NULL with INVALID_INPUT or OUT_OF_MEMORY. */
BONSAI_API BonsaiTensor *bonsai_tensor_new (int ndim, const gint64 *shape,
                                            GError **error);
BONSAI_API void bonsai_tensor_free (BonsaiTensor *tensor);

/* ---- Models ------------------------------------------------------------ */

/* A model opened from a release folder as the Hugging Face repositories lay
 * it out (research/bonsai_release.md §1.1), MLX or unpacked:
 *   transformer-packed-mflux/ or transformer/   the DiT (MLX pack or dense)
 *   vae/                                       AutoencoderKLFlux2
 *   text_encoder-mlx-4bit/ or text_encoder/    Qwen3 (optional)
 *   tokenizer/                                 tokenizer.json (optional)
 *   scheduler/                                 checked, not read (optional)
 * A part that model_index.json lists must be there, and its pipeline must be
 * Flux2KleinPipeline.  Weights are memory-mapped; the text encoder is checked
 * at opening but loaded only while a prompt is encoded.  A model without text
 * encoder or tokenizer still generates from precomputed prompt features.
 * The object is immutable after opening and may be used by several threads
 * at once. */
typedef struct BonsaiModel BonsaiModel;

/* `path` is a model folder, or the name of an installed model (as for
 * bonsai_model_download; found in BONSAI_MODELS, among the bundled models
 * or in the Hugging Face cache, never downloaded here).  NULL or "" is the
 * default model, or, when it is not installed, the bundled Bonsai Shapes
 * model "shapes" (a small model of a 128×128 world of shapes), said once
 * per process as a message (see bonsai_model_default_name).
 * Checks every tensor's name, dtype and shape before returning.  Returns a
 * new reference, or NULL with NOT_FOUND (naming the missing part or file),
 * FORMAT or IO naming the file and the problem.  The same files open once
 * per process (see Caches). */
BONSAI_API BonsaiModel *bonsai_model_open (const char *path, GError **error);
/* Returns `model` with one more reference. */
BONSAI_API BonsaiModel *bonsai_model_ref (BonsaiModel *model);
/* Drops a reference; the last one unmaps the weights. */
BONSAI_API void bonsai_model_unref (BonsaiModel *model);
/* Width and height of generated images must be multiples of this (16 for
 * FLUX.2 [klein]: VAE factor 8 × 2×2 latent patches). */
BONSAI_API int bonsai_model_size_multiple (const BonsaiModel *model);

/* ---- Model store --------------------------------------------------------- */

/* Called while a model downloads, after each piece of `file` (a path in the
 * repository) arrives, with the bytes done and in total over all of the
 * model's files.  Returning FALSE cancels. */
typedef gboolean (*BonsaiDownloadFunc) (const char *file, gint64 done,
                                        gint64 total, gpointer user_data);

/* Makes model `name` available and returns its folder in *out_dir (caller
 * owns it).  `name` is a short name of the manifest (data/models.json:
 * "ternary", "binary", …), a Hugging Face repository ORG/NAME, or NULL for
 * the default model (the ternary MLX pack).  A model in BONSAI_MODELS or in
 * the Hugging Face cache is used as it is; otherwise its files download into
 * that cache (HF_HOME, HF_HUB_CACHE, HF_ENDPOINT, HF_TOKEN honoured),
 * resuming what an earlier call left, each file checked against its sha256
 * before it appears under its final name.  Cancelling (*cancel non-zero, or
 * FALSE from `progress`) keeps the partial file for the next call.  Errors:
 * NOT_FOUND (unknown name, HTTP 404, or offline with HF_HUB_OFFLINE=1),
 * NETWORK, CHECKSUM, IO (disk full or too little space), CANCELLED; each
 * names the file. */
BONSAI_API gboolean bonsai_model_download (const char *name,
                                           BonsaiDownloadFunc progress,
                                           gpointer user_data, gint *cancel,
                                           char **out_dir, GError **error);

/* The name bonsai_model_open (NULL) opens: the manifest's default model
 * ("ternary") when it is installed, else "shapes" when the bundled Bonsai
 * Shapes model is, else the default's name (opening it then fails saying
 * how to download it).  For hosts that show a default.  Caller frees it. */
BONSAI_API char *bonsai_model_default_name (void);

/* An installed model, as bonsai_models_installed() lists it. */
typedef struct {
  char *name;         /* what bonsai_model_open() takes: the short name, the
                         repository, or the folder's name in BONSAI_MODELS */
  char *dir;          /* its folder                                        */
  gint64 size;        /* bytes of its files                                */
  gboolean complete;  /* no file the manifest lists is missing             */
} BonsaiModelInfo;

/* The models found without a download: the model folders in BONSAI_MODELS,
 * the bundled models and the manifest's repositories in the Hugging Face
 * cache (checksums are
 * not computed here; `bonsai-image models --verify` does).  Returns an array
 * of BonsaiModelInfo the caller owns (unreffing it frees them), or NULL with
 * IO when a folder cannot be read. */
BONSAI_API GPtrArray *bonsai_models_installed (GError **error);

/* ---- Caches ------------------------------------------------------------ */

/* Two process-wide caches serve every host in the process:
 *   models   bonsai_model_open() of the same files (the same real paths,
 *            device, inode, size and modification time) on the same backend
 *            returns the model already loaded, with one more reference,
 *            even when two threads open it at once; the last
 *            bonsai_model_unref() unloads it.
 *   prompts  the features of the prompts encoded last (8 unless set below,
 *            all models together) are kept, so generating one prompt with
 *            several seeds runs the text encoder once.  A klein entry holds
 *            512 × 7680 floats (15.7 MB); a model's entries go with it.
 * Each hit is logged (g_info, log domain "bonsai"). */
typedef struct {
  guint64 model_opens;     /* models loaded from their files               */
  guint64 model_hits;      /* opens answered with a model already loaded   */
  guint64 prompt_encodes;  /* prompts run through the text encoder         */
  guint64 prompt_hits;     /* prompts answered from the cache              */
  guint models;            /* models loaded now                            */
  guint prompts;           /* prompt features held now                     */
} BonsaiCacheStats;

/* Counts since the process started, and what the caches hold now. */
BONSAI_API void bonsai_cache_stats (BonsaiCacheStats *out);
/* How many prompt features to keep (0: none); fewer are dropped at once,
 * least recently used first. */
BONSAI_API void bonsai_cache_set_prompt_capacity (guint entries);

/* ---- Requests ---------------------------------------------------------- */

#define BONSAI_SIZE_AUTO (-1)
#define BONSAI_MAX_SIDE 4096     /* largest width or height accepted        */
#define BONSAI_MAX_STEPS 1000
#define BONSAI_MAX_REFERENCES 4

/* One generation.  Fill with bonsai_request_init(), then set fields; the
 * request only borrows what it points to. */
typedef struct {
  const char *prompt;                 /* UTF-8; NULL when features is set  */
  const BonsaiTensor *features;       /* precomputed [L, D] prompt features,
                                         e.g. from bonsai_encode_prompt()   */
  int width, height;                  /* BONSAI_SIZE_AUTO: the first
                                         reference's processed size, else
                                         1024                               */
  int steps;                          /* default 4                          */
  guint64 seed;                       /* picks the noise (when latents is
                                         NULL)                              */
  const BonsaiTensor *latents;        /* initial latents [C, H/16, W/16] in
                                         place of the seeded noise, or NULL */
  /* 0 … 4 images to edit from, each at least 64 pixels a side with an
   * aspect ratio up to 8:1; one of more than 1024² pixels is shrunk to
   * about 1024² (Lanczos), then each is cropped around its centre to
   * multiples of bonsai_model_size_multiple(). */
  const BonsaiImage *const *references;
  int n_references;
  int threads;                        /* 0: one per processor               */
  BonsaiPrecision precision;          /* default BONSAI_PRECISION_AUTO      */
  BonsaiPixelFormat format;           /* of the output image                */
  /* Optional: set *cancel to non-zero (g_atomic_int_set) from any thread to
   * stop the work; it is read between transformer blocks and VAE layers.  A
   * FALSE answer from the progress callback sets it too. */
  gint *cancel;
} BonsaiRequest;

BONSAI_API void bonsai_request_init (BonsaiRequest *request);

/* ---- Progress and cancellation ----------------------------------------- */

typedef enum {
  BONSAI_STAGE_ENCODE_PROMPT,  /* done = 1 of 1 when the prompt is encoded   */
  BONSAI_STAGE_ENCODE_IMAGES,  /* one call per reference image               */
  BONSAI_STAGE_DENOISE,        /* one call per denoising step                */
  BONSAI_STAGE_DECODE,         /* one call per decoded VAE tile              */
} BonsaiStage;

/* Called on the thread that runs the work after each unit `done` of `total`
 * of `stage`.  Returning FALSE cancels: the call then fails with
 * BONSAI_ERROR_CANCELLED and produces nothing. */
typedef gboolean (*BonsaiProgressFunc) (BonsaiStage stage, int done,
                                        int total, gpointer user_data);

/* ---- Generation -------------------------------------------------------- */

/* Text (and reference images) to an image: encode the prompt, denoise,
 * decode.  On success *out is a new image of request->format that the caller
 * owns.  Errors: INVALID_INPUT for a request the model cannot serve (the
 * message names the field), CANCELLED, OUT_OF_MEMORY, NOT_FOUND (no text
 * encoder for a prompt). */
BONSAI_API gboolean bonsai_generate (BonsaiModel *model,
                                     const BonsaiRequest *request,
                                     BonsaiProgressFunc progress,
                                     gpointer user_data, BonsaiImage **out,
                                     GError **error);

/* The steps of bonsai_generate, for hosts that keep intermediate results
 * (a node graph).  Each returns a new object the caller owns. */

/* Prompt → features [512, 7680] (klein's Qwen3 hidden states 9, 18, 27). */
BONSAI_API BonsaiTensor *bonsai_encode_prompt (BonsaiModel *model,
                                               const char *prompt,
                                               int threads, GError **error);
/* The seeded noise for an image of width × height: [C, H/16, W/16] standard
 * normal values, the same on every host and thread count. */
BONSAI_API BonsaiTensor *bonsai_make_noise (BonsaiModel *model, int width,
                                            int height, guint64 seed,
                                            GError **error);
/* Denoises: returns the final latents in the same normalised, patchified
 * layout [C, H/16, W/16] as the noise.  request->format is unused. */
BONSAI_API BonsaiTensor *bonsai_sample (BonsaiModel *model,
                                        const BonsaiRequest *request,
                                        BonsaiProgressFunc progress,
                                        gpointer user_data, GError **error);
/* Latents from bonsai_sample → image of `format` (VAE decode, tiled for
 * large images, at the precision BONSAI_PRECISION_AUTO stands for). */
BONSAI_API BonsaiImage *bonsai_decode (BonsaiModel *model,
                                       const BonsaiTensor *latents,
                                       BonsaiPixelFormat format, int threads,
                                       BonsaiProgressFunc progress,
                                       gpointer user_data, GError **error);

G_END_DECLS

#endif /* BONSAI_H */
