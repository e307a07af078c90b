/* bench_text.c — `bonsai-image bench text-encoder`: time and peak memory of
 * encoding one 512-token prompt with a full-size Qwen3-4B in the release's
 * MLX 4-bit layout (text_encoder-mlx-4bit/: every linear and the embedding
 * table packed, group 64, bf16 scales and biases; norms bf16).
 *
 * The model is synthetic — random codes, plausible scales — and written
 * once into the cache (or --dir).  Its tensors are windows at random offsets
 * into one pool of random words, so writing 2.3 GB needs under 300 MB of
 * memory: the writer takes data by reference until it writes. */
#include "cli.h"

#include "qwen3.h"
#include "safetensors.h"
#include "threadpool.h"

#include "bonsai/bonsai.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define N_TOKENS 512
#define PROMPT_TOKENS 40 /* real tokens; the rest is padding, as in klein */
#define GROUP 64
#define PAD_ID 151643

/* Qwen3-4B as released (text_encoder-mlx-4bit/config.json). */
static const struct {
  int hidden, layers, heads, kv_heads, head_dim, inter, vocab;
} q4b = { 2560, 36, 32, 8, 128, 9728, 151936 };

static const char config_json[] =
  "{\n"
  "  \"architectures\": [\"Qwen3ForCausalLM\"],\n"
  "  \"attention_bias\": false,\n"
  "  \"attention_dropout\": 0.0,\n"
  "  \"bos_token_id\": 151643,\n"
  "  \"eos_token_id\": 151645,\n"
  "  \"head_dim\": 128,\n"
  "  \"hidden_act\": \"silu\",\n"
  "  \"hidden_size\": 2560,\n"
  "  \"initializer_range\": 0.02,\n"
  "  \"intermediate_size\": 9728,\n"
  "  \"max_position_embeddings\": 40960,\n"
  "  \"max_window_layers\": 36,\n"
  "  \"model_type\": \"qwen3\",\n"
  "  \"num_attention_heads\": 32,\n"
  "  \"num_hidden_layers\": 36,\n"
  "  \"num_key_value_heads\": 8,\n"
  "  \"quantization\": {\"group_size\": 64, \"bits\": 4},\n"
  "  \"quantization_config\": {\"group_size\": 64, \"bits\": 4},\n"
  "  \"rms_norm_eps\": 1e-06,\n"
  "  \"rope_scaling\": null,\n"
  "  \"rope_theta\": 1000000,\n"
  "  \"sliding_window\": null,\n"
  "  \"tie_word_embeddings\": true,\n"
  "  \"torch_dtype\": \"bfloat16\",\n"
  "  \"use_cache\": true,\n"
  "  \"use_sliding_window\": false,\n"
  "  \"vocab_size\": 151936\n"
  "}\n";

static uint64_t
next_random (uint64_t *s)
{
  /* xorshift64*: fast, and good enough for weights nobody reads. */
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 0x2545f4914f6cdd1dull;
}

typedef struct {
  uint32_t *codes;    /* random words */
  size_t n_codes;
  uint16_t *scales;   /* bf16 in [0.004, 0.016] */
  uint16_t *biases;   /* bf16, −7.5·scale: zero-mean weights */
  uint16_t *norms;    /* bf16 in [0.5, 1.5] */
  size_t n_groups;
  uint64_t rng;
  GPtrArray *views;   /* BnTensor *: the writer keeps pointers to them */
  BnStWriter *writer;
  GString *index;
  size_t total_bytes;
} Gen;

static size_t
pick_offset (Gen *g, size_t pool, size_t need)
{
  return (size_t) (next_random (&g->rng) % (pool - need + 1));
}

static gboolean
add_packed (Gen *g, const char *prefix, int64_t n, int64_t k, GError **error)
{
  BnTensor *t = g_new0 (BnTensor, 1);
  g_ptr_array_add (g->views, t);
  size_t words = (size_t) (n * k / 8), groups = (size_t) (n * k / GROUP);
  size_t go = pick_offset (g, g->n_groups, groups);
  t->dtype = BN_DTYPE_Q4;
  t->ndim = 2;
  t->shape[0] = n;
  t->shape[1] = k;
  t->data = g->codes + pick_offset (g, g->n_codes, words);
  t->scales = g->scales + go;
  t->biases = g->biases + go;
  t->scale_dtype = BN_DTYPE_BF16;
  t->group_size = GROUP;
  g->total_bytes += bn_tensor_total_bytes (t);
  const char *parts[] = { "weight", "scales", "biases" };
  for (size_t i = 0; i < G_N_ELEMENTS (parts); i++)
    g_string_append_printf (g->index, ",\n    \"%s.%s\": \"model.safetensors\"",
                            prefix, parts[i]);
  return bn_st_writer_add_packed (g->writer, prefix, t, error);
}

static gboolean
add_norm (Gen *g, const char *name, int64_t n, GError **error)
{
  g->total_bytes += (size_t) n * 2;
  g_string_append_printf (g->index, ",\n    \"%s\": \"model.safetensors\"", name);
  return bn_st_writer_add (g->writer, name, BN_DTYPE_BF16, 1, &n,
                           g->norms + pick_offset (g, g->n_groups, (size_t) n), error);
}

static gboolean
add_layer (Gen *g, int i, GError **error)
{
  int64_t h = q4b.hidden, qw = (int64_t) q4b.heads * q4b.head_dim;
  int64_t kw = (int64_t) q4b.kv_heads * q4b.head_dim, im = q4b.inter;
  const struct { const char *name; int64_t n, k; } lin[] = {
    { "mlp.down_proj", h, im }, { "mlp.gate_proj", im, h }, { "mlp.up_proj", im, h },
    { "self_attn.k_proj", kw, h }, { "self_attn.o_proj", h, qw },
    { "self_attn.q_proj", qw, h }, { "self_attn.v_proj", kw, h },
  };
  const struct { const char *name; int64_t n; } norms[] = {
    { "input_layernorm", h }, { "post_attention_layernorm", h },
    { "self_attn.k_norm", q4b.head_dim }, { "self_attn.q_norm", q4b.head_dim },
  };
  for (size_t j = 0; j < G_N_ELEMENTS (lin); j++)
    {
      g_autofree char *p = g_strdup_printf ("model.layers.%d.%s", i, lin[j].name);
      if (!add_packed (g, p, lin[j].n, lin[j].k, error))
        return FALSE;
    }
  for (size_t j = 0; j < G_N_ELEMENTS (norms); j++)
    {
      g_autofree char *p = g_strdup_printf ("model.layers.%d.%s.weight", i, norms[j].name);
      if (!add_norm (g, p, norms[j].n, error))
        return FALSE;
    }
  return TRUE;
}

static void
gen_clear (Gen *g)
{
  g_free (g->codes);
  g_free (g->scales);
  g_free (g->biases);
  g_free (g->norms);
  if (g->views)
    g_ptr_array_unref (g->views);
  bn_st_writer_free (g->writer);
  if (g->index)
    g_string_free (g->index, TRUE);
}

static gboolean
write_text (const char *dir, const char *name, const char *text, GError **error)
{
  g_autofree char *p = g_build_filename (dir, name, NULL);
  GError *ferr = NULL;
  if (!g_file_set_contents (p, text, -1, &ferr))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "%s", ferr->message);
      g_error_free (ferr);
      return FALSE;
    }
  return TRUE;
}

/* Writes model.safetensors, its index and, last, config.json: a folder with
 * a config.json is complete. */
static gboolean
generate (const char *dir, GError **error)
{
  if (g_mkdir_with_parents (dir, 0755) != 0)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "cannot create %s: %s",
                   dir, g_strerror (errno));
      return FALSE;
    }
  Gen g = { 0 };
  /* The pools: the largest tensor (the embedding codes, its groups) plus
   * room for the windows to move. */
  g.n_codes = (size_t) q4b.vocab * q4b.hidden / 8 + (4u << 20);
  g.n_groups = (size_t) q4b.vocab * q4b.hidden / GROUP + (4u << 20);
  g.codes = g_try_new (uint32_t, g.n_codes);
  g.scales = g_try_new (uint16_t, g.n_groups);
  g.biases = g_try_new (uint16_t, g.n_groups);
  g.norms = g_try_new (uint16_t, g.n_groups);
  g.rng = 0x9e3779b97f4a7c15ull;
  if (!g.codes || !g.scales || !g.biases || !g.norms)
    {
      gen_clear (&g);
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                   "out of memory for the synthetic model's random pools");
      return FALSE;
    }
  for (size_t i = 0; i < g.n_codes; i++)
    g.codes[i] = (uint32_t) (next_random (&g.rng) >> 32);
  for (size_t i = 0; i < g.n_groups; i++)
    {
      float u = (float) (next_random (&g.rng) >> 40) / (float) (1 << 24);
      float scale = 0.004f + 0.012f * u;
      g.scales[i] = bn_f32_to_bf16 (scale);
      g.biases[i] = bn_f32_to_bf16 (-7.5f * bn_bf16_to_f32 (g.scales[i]));
      g.norms[i] = bn_f32_to_bf16 (0.5f + u);
    }
  g.views = g_ptr_array_new_with_free_func (g_free);
  g.writer = bn_st_writer_new ();
  bn_st_writer_set_metadata (g.writer, "format", "mlx");
  g.index = g_string_new ("");
  gboolean ok = add_packed (&g, "model.embed_tokens", q4b.vocab, q4b.hidden, error);
  for (int i = 0; ok && i < q4b.layers; i++)
    ok = add_layer (&g, i, error);
  ok = ok && add_norm (&g, "model.norm.weight", q4b.hidden, error);
  g_autofree char *file = g_build_filename (dir, "model.safetensors", NULL);
  ok = ok && bn_st_writer_write (g.writer, file, error);
  if (ok)
    {
      /* The list was built with a leading ",\n" per entry. */
      g_autofree char *index = g_strdup_printf (
          "{\n  \"metadata\": {\"total_size\": %zu},\n  \"weight_map\": {%s\n  }\n}\n",
          g.total_bytes, g.index->str + 1);
      ok = write_text (dir, "model.safetensors.index.json", index, error)
           && write_text (dir, "config.json", config_json, error);
    }
  gen_clear (&g);
  return ok;
}

/* A line of /proc/self/status in kB ("VmHWM", "VmRSS"); −1 when absent. */
static long
proc_status_kb (const char *key)
{
  g_autofree char *status = NULL;
  if (!g_file_get_contents ("/proc/self/status", &status, NULL, NULL))
    return -1;
  g_auto (GStrv) lines = g_strsplit (status, "\n", -1);
  size_t n = strlen (key);
  for (char **l = lines; *l; l++)
    if (!strncmp (*l, key, n) && (*l)[n] == ':')
      return strtol (*l + n + 1, NULL, 10);
  return -1;
}

/* User + system CPU seconds of the process so far: on a shared machine the
 * wall time alone says little. */
static double
cpu_seconds (void)
{
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec
         + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Resets VmHWM so that the peak measured is the encoder's, not the
 * generator's (Linux >= 4.0: "5" to clear_refs; a plain write, since /proc
 * takes no temporary file). */
static gboolean
reset_peak (void)
{
  FILE *f = fopen ("/proc/self/clear_refs", "w");
  if (!f)
    return FALSE;
  gboolean ok = fputs ("5", f) >= 0;
  return fclose (f) == 0 && ok;
}

int
bn_bench_text_encoder (int argc, char **argv)
{
  g_autofree char *dir = NULL;
  int threads = 0;
  gboolean keep_pages = FALSE;
  GOptionEntry entries[] = {
    { "dir", 0, 0, G_OPTION_ARG_FILENAME, &dir,
      "Folder of the synthetic model (default: the user cache)", "DIR" },
    { "threads", 0, 0, G_OPTION_ARG_INT, &threads,
      "Worker threads (default: one per processor)", "N" },
    { "keep-pages", 0, 0, G_OPTION_ARG_NONE, &keep_pages,
      "Keep each layer's weights resident after it ran", NULL },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("");
  g_option_context_set_summary (ctx,
      "Encodes one 512-token prompt with a synthetic Qwen3-4B in the release's "
      "MLX 4-bit layout (written once, 2.3 GB) and reports time and peak "
      "resident memory.");
  g_option_context_add_main_entries (ctx, entries, NULL);
  GError *error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return bn_cli_fail (error);
  if (!dir)
    dir = g_build_filename (g_get_user_cache_dir (), "bonsai-image", "synthetic",
                            "qwen3-4b-mlx-4bit", NULL);

  g_autofree char *cfg = g_build_filename (dir, "config.json", NULL);
  if (!g_file_test (cfg, G_FILE_TEST_IS_REGULAR))
    {
      printf ("writing a synthetic Qwen3-4B (MLX 4-bit) to %s ...\n", dir);
      fflush (stdout);
      gint64 t = g_get_monotonic_time ();
      if (!generate (dir, &error))
        return bn_cli_fail (error);
      printf ("  written in %.1f s\n", (g_get_monotonic_time () - t) / 1e6);
    }
  if (!reset_peak ())
    printf ("note: VmHWM could not be reset; the peak includes model generation\n");

  BnThreadPool *pool = bn_thread_pool_new (threads, &error);
  if (!pool)
    return bn_cli_fail (error);
  gint64 t0 = g_get_monotonic_time ();
  BnQwen3Options opts = { NULL, 0, keep_pages };
  BnQwen3 *m = bn_qwen3_open (dir, &opts, &error);
  if (!m)
    {
      bn_thread_pool_free (pool);
      return bn_cli_fail (error);
    }
  gint64 t1 = g_get_monotonic_time ();
  long rss_open = proc_status_kb ("VmRSS");

  int32_t ids[N_TOKENS];
  uint8_t mask[N_TOKENS];
  uint64_t rng = 42;
  for (int i = 0; i < N_TOKENS; i++)
    {
      ids[i] = i < PROMPT_TOKENS ? (int32_t) (next_random (&rng) % 151643) : PAD_ID;
      mask[i] = i < PROMPT_TOKENS;
    }
  BnTensor f;
  double cpu0 = cpu_seconds ();
  gboolean ok = bn_qwen3_encode (m, pool, ids, mask, N_TOKENS, &f, &error);
  gint64 t2 = g_get_monotonic_time ();
  double cpu = cpu_seconds () - cpu0;
  if (ok)
    {
      double sum = 0;
      const float *x = f.data;
      for (int64_t i = 0; i < bn_tensor_numel (&f); i++)
        sum += fabsf (x[i]);
      printf ("text encoder (synthetic Qwen3-4B, MLX 4-bit g%d, layers 9/18/27 of 36)\n"
              "  threads         %d\n"
              "  open            %.2f s (RSS %.0f MiB)\n"
              "  encode          %.2f s for %d tokens (%.1f tokens/s), CPU %.2f s\n"
              "  features        [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "], mean |x| %.4g\n"
              "  peak RSS        %.0f MiB (VmHWM), after encode %.0f MiB\n"
              "  page dropping   %s\n",
              GROUP, bn_thread_pool_size (pool), (t1 - t0) / 1e6, rss_open / 1024.0,
              (t2 - t1) / 1e6, N_TOKENS, N_TOKENS / ((t2 - t1) / 1e6), cpu,
              f.shape[0], f.shape[1], sum / (double) bn_tensor_numel (&f),
              proc_status_kb ("VmHWM") / 1024.0, proc_status_kb ("VmRSS") / 1024.0,
              keep_pages ? "off" : "on");
      bn_tensor_clear (&f);
    }
  bn_qwen3_free (m);
  bn_thread_pool_free (pool);
  return ok ? 0 : bn_cli_fail (error);
}
