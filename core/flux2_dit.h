/* flux2_dit.h — the FLUX.2 [klein] transformer (internal).
 *
 * A Flux2Transformer2DModel (research/flux2_klein_spec.md §2): the model
 * predicts the flow-matching velocity of the image tokens given the text
 * features and sigma.  Weights are read in place from safetensors with
 * diffusers or BFL tensor names, dense (f32, f16, bf16) or as MLX low-bit
 * packs; only the small per-head RMSNorm scales are copied (to f32).
 *
 * Loading is in flux2_dit_load.c, the forward pass in flux2_dit.c.
 */
#ifndef BN_FLUX2_DIT_H
#define BN_FLUX2_DIT_H

#include "safetensors.h"
#include "kernels/kernels.h"
#include "threadpool.h"
#include "weights.h"

/* RoPE axes the engine accepts (FLUX.2 uses 4: t, h, w, l). */
#define BN_FLUX2_MAX_AXES 8
/* Default tokens per chunk (see bn_flux2_dit_forward). */
#define BN_FLUX2_CHUNK_ROWS 512

typedef struct {
  int in_channels;      /* features of an input image token */
  int out_channels;     /* features of an output token: patch_size²·out_channels */
  int num_layers;       /* double-stream blocks */
  int num_single_layers;
  int n_heads;
  int head_dim;
  int dim;              /* n_heads·head_dim */
  int context_dim;      /* joint_attention_dim: features of a text token */
  int time_channels;    /* timestep_guidance_channels: sinusoidal embedding width */
  int mlp_hidden;       /* int(dim·mlp_ratio); the SwiGLU input is twice this */
  int n_axes;
  int axes_dim[BN_FLUX2_MAX_AXES]; /* head dims per RoPE axis; they sum to head_dim */
  double rope_theta;
  float eps;            /* LayerNorm and QK RMSNorm */
} BnFlux2Config;

/* Parses a diffusers transformer config.json (`len` < 0: NUL-terminated).
 * Keys not given take diffusers' defaults; guidance_embeds = true (FLUX.2
 * [dev]) is refused.  `origin` names the source in error messages
 * (BONSAI_ERROR_FORMAT for bad JSON and for values out of range). */
gboolean bn_flux2_config_parse (const char *json, gssize len,
                                const char *origin, BnFlux2Config *cfg,
                                GError **error);

/* Parses a quantization_config.json of an MLX pack: `bits`, `group_size`
 * and `solver` ("ternary" restricts 2-bit codes to 0..2). */
gboolean bn_flux2_quant_parse (const char *json, gssize len,
                               const char *origin, BnQuantSpec *quant,
                               GError **error);

/* ---- loaded weights (read-only after loading) ---------------------------
 * Linear weights are views into the mapped file of the model. */

typedef struct {
  /* q, k and v projections: one fused [3·dim, dim] tensor (BFL) or three
   * [dim, dim] tensors (diffusers), whose outputs go side by side. */
  BnTensor qkv[3];
  int n_qkv;
  const float *q_norm;  /* [head_dim], inside BnFlux2Dit.norms */
  const float *k_norm;
  BnTensor proj;        /* [dim, dim] attention output */
  BnTensor mlp_in;      /* [2·mlp_hidden, dim]: SwiGLU gate rows, then up rows */
  BnTensor mlp_out;     /* [dim, mlp_hidden] */
} BnFlux2Stream;

typedef struct {
  BnFlux2Stream img, txt;
} BnFlux2DoubleBlock;

typedef struct {
  BnTensor linear1;     /* [3·dim + 2·mlp_hidden, dim]: q, k, v, gate, up */
  BnTensor linear1_qkv; /* its first 3·dim rows (a view) */
  BnTensor linear1_mlp; /* its last 2·mlp_hidden rows (a view) */
  BnTensor linear2;     /* [dim, dim + mlp_hidden]: attention ⊕ SwiGLU */
  const float *q_norm;
  const float *k_norm;
} BnFlux2SingleBlock;

typedef struct {
  BnFlux2Config cfg;
  BnSafetensors *st;    /* owned; every view below points into it */
  BnTensor img_in;      /* [dim, in_channels] */
  BnTensor txt_in;      /* [dim, context_dim] */
  BnTensor time_in;     /* [dim, time_channels] */
  BnTensor time_out;    /* [dim, dim] */
  BnTensor mod_img;     /* [6·dim, dim]: shift, scale, gate for attention, then MLP */
  BnTensor mod_txt;
  BnTensor mod_single;  /* [3·dim, dim]: shift, scale, gate */
  BnTensor final_mod;   /* [2·dim, dim] */
  gboolean final_shift_first; /* BFL rows: shift, scale; diffusers: scale, shift */
  BnTensor final_out;   /* [out_channels, dim] */
  BnFlux2DoubleBlock *doubles; /* [num_layers] */
  BnFlux2SingleBlock *singles; /* [num_single_layers] */
  float *norms;         /* owned: every QK RMSNorm scale, as f32 */
} BnFlux2Dit;

/* Builds the model over `st`, which it takes (freed with the model, or at
 * once on failure), for `cfg` as bn_flux2_config_parse made it.  Tensor names are detected (diffusers `x_embedder` or
 * BFL `img_in`); every shape is checked against `cfg` and a missing or
 * misshapen tensor fails naming it.  `quant` (may be NULL: no packed layers)
 * describes MLX-packed linears.  Returns a new model (bn_flux2_dit_free). */
BnFlux2Dit *bn_flux2_dit_new (BnSafetensors *st, const BnFlux2Config *cfg,
                              const BnQuantSpec *quant, GError **error);

/* Opens the transformer at `weights` (a .safetensors file, an index.json or
 * a folder, as bn_safetensors_open).  The config comes from `config_path`
 * if not NULL, else from the weights' `__metadata__` "config" entry, else
 * from config.json in the weights' folder.  quantization_config.json in
 * that folder, if present, describes packed layers. */
BnFlux2Dit *bn_flux2_dit_load (const char *weights, const char *config_path,
                               GError **error);
void bn_flux2_dit_free (BnFlux2Dit *dit);

/* ---- forward ------------------------------------------------------------ */

/* Called after each block with the blocks done and the total; runs on the
 * thread that called bn_flux2_dit_forward. */
typedef void (*BnFlux2Progress) (void *data, int done, int total);

typedef struct {
  float t;                 /* sigma in [0, 1]; the model embeds 1000·t */
  const float *x;          /* [n_img, in_channels]: image tokens, then any
                            * reference-image tokens (editing) */
  const int64_t *img_ids;  /* [n_img, n_axes] positions */
  int64_t n_img;
  int64_t n_out;           /* velocities wanted for the first n_out image
                            * tokens, 1..n_img */
  const float *ctx;        /* [n_txt, context_dim] text features */
  const int64_t *txt_ids;  /* [n_txt, n_axes] */
  int64_t n_txt;
  int64_t chunk_rows;      /* tokens per chunk of the row-wise work; 0:
                            * BN_FLUX2_CHUNK_ROWS.  Fewer need less memory,
                            * more let the linears reuse decoded weights */
  float *workspace;        /* NULL, or bn_flux2_workspace_bytes (cfg,
                            * n_txt + n_img, chunk_rows) bytes used in place
                            * of an allocation of its own: a sampler passes
                            * one buffer for all its steps */
  BnActPrecision act;      /* activations of the blocks' binary/ternary
                            * linears: BN_ACT_EXACT (fp32, the default),
                            * BF16 or INT8 where the CPU has them */
  const gint *cancel;      /* NULL, or read atomically between blocks:
                            * nonzero stops with BONSAI_ERROR_CANCELLED */
  BnFlux2Progress progress; /* NULL or called after every block */
  void *progress_data;
} BnFlux2Input;

/* Bytes of the activation workspace one forward over n_tokens = n_txt +
 * n_img tokens allocates (its only large allocation); 0 if it overflows. */
size_t bn_flux2_workspace_bytes (const BnFlux2Config *cfg, int64_t n_tokens,
                                 int64_t chunk_rows);

/* Runs the transformer: out[n_out, out_channels] = velocity of the first
 * n_out image tokens.  fp32 activations (in->act may round the inputs of
 * the blocks' low-bit linears); the result depends neither on the
 * pool's thread count (pool may be NULL) nor on chunk_rows.  Only what
 * attention needs is kept for all tokens; everything else, such as the wide
 * single-block linear1 output, is computed chunk_rows tokens at a time.
 * Fails with INVALID_INPUT for bad arguments, OUT_OF_MEMORY if the
 * workspace cannot be had, CANCELLED. */
gboolean bn_flux2_dit_forward (const BnFlux2Dit *dit, BnThreadPool *pool,
                               const BnFlux2Input *in, float *out,
                               GError **error);

/* The parts of the forward that other implementations of it share
 * (flux2_dit_device.c): the argument checks (INVALID_INPUT), and the
 * sinusoidal embedding of sigma t into `channels` floats. */
gboolean bn_flux2_check_input (const BnFlux2Dit *dit, const BnFlux2Input *in,
                               const float *out, GError **error);
void bn_flux2_timestep_embedding (float t, int channels, float *out);

#endif
