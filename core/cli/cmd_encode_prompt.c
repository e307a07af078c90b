/* cmd_encode_prompt.c — `bonsai-image encode-prompt`: a prompt through the
 * klein template, the tokenizer and the Qwen3 text encoder, written as
 * safetensors: `features` f32 [512, n_out·hidden] ([512, 7680] for klein
 * 4B), with the `input_ids` and `attention_mask` (I64 [512]) it came from,
 * named as in the reference sets.
 *
 * With --prompts FILE (one prompt per line) the tokenizer and the encoder
 * are opened once for all of them, and the file holds `features` f16
 * [n, 512, n_out·hidden], `input_ids` and `attention_mask` I64 [n, 512]:
 * the training data of a model, where f16 halves the size. */
#include "cli.h"

#include "qwen3.h"
#include "safetensors.h"
#include "threadpool.h"
#include "tokenizer.h"

#include "bonsai/bonsai.h"

#include <stdio.h>
#include <string.h>

/* --tokenizer, else beside the model (a release's tokenizer/ or the
 * encoder folder's own tokenizer.json), else BONSAI_TOKENIZER. */
static char *
find_tokenizer (const char *option, const char *model, const char *encoder,
                GError **error)
{
  if (option)
    return bn_tokenizer_locate (option, error);
  const char *places[] = { model, encoder };
  for (size_t i = 0; i < G_N_ELEMENTS (places); i++)
    {
      char *p = bn_tokenizer_locate (places[i], NULL);
      if (p)
        return p;
    }
  char *p = bn_tokenizer_locate (NULL, NULL);
  if (!p)
    g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                 "no tokenizer.json in %s%s%s or a tokenizer/ folder there, "
                 "and BONSAI_TOKENIZER is not set; name one with --tokenizer",
                 model, strcmp (model, encoder) ? ", " : "",
                 strcmp (model, encoder) ? encoder : "");
  return p;
}

static gboolean
encode_prompt (const char *model, const char *tok_option, const char *text,
               const char *out, int threads, GError **error)
{
  g_autofree char *encoder = bn_qwen3_find_dir (model, error);
  if (!encoder)
    return FALSE;
  g_autofree char *tok_path = find_tokenizer (tok_option, model, encoder, error);
  if (!tok_path)
    return FALSE;
  g_autoptr (BnTokenizer) tok = bn_tokenizer_load (tok_path, error);
  if (!tok)
    return FALSE;
  int32_t ids[BN_KLEIN_MAX_LENGTH];
  uint8_t mask[BN_KLEIN_MAX_LENGTH];
  int n_real;
  if (!bn_tokenizer_klein_prompt (tok, text, BN_KLEIN_MAX_LENGTH, ids, mask,
                                  &n_real, error))
    return FALSE;

  gint64 t0 = g_get_monotonic_time ();
  BnQwen3 *m = bn_qwen3_open (encoder, NULL, error);
  if (!m)
    return FALSE;
  BnThreadPool *pool = bn_thread_pool_new (threads, error);
  BnTensor f = { 0 };
  gboolean ok = pool && bn_qwen3_encode (m, pool, ids, mask, BN_KLEIN_MAX_LENGTH,
                                         &f, error);
  if (!ok && pool)
    g_prefix_error (error, "%s: ", encoder);
  int n_out;
  const int *layers = bn_qwen3_out_layers (m, &n_out);
  GString *layer_list = g_string_new (NULL);
  for (int i = 0; i < n_out; i++)
    g_string_append_printf (layer_list, "%s%d", i ? "," : "", layers[i]);
  /* The encoder is released before writing: its output is all we need. */
  bn_qwen3_free (m);
  bn_thread_pool_free (pool);
  gint64 t1 = g_get_monotonic_time ();

  int64_t ids64[BN_KLEIN_MAX_LENGTH], mask64[BN_KLEIN_MAX_LENGTH];
  for (int i = 0; i < BN_KLEIN_MAX_LENGTH; i++)
    {
      ids64[i] = ids[i];
      mask64[i] = mask[i];
    }
  int64_t len = BN_KLEIN_MAX_LENGTH;
  BnStWriter *w = bn_st_writer_new ();
  bn_st_writer_set_metadata (w, "out_layers", layer_list->str);
  bn_st_writer_set_metadata (w, "text_encoder", encoder);
  ok = ok
       && bn_st_writer_add (w, "features", BN_DTYPE_F32, 2, f.shape, f.data, error)
       && bn_st_writer_add (w, "input_ids", BN_DTYPE_I64, 1, &len, ids64, error)
       && bn_st_writer_add (w, "attention_mask", BN_DTYPE_I64, 1, &len, mask64, error)
       && bn_st_writer_write (w, out, error);
  if (ok)
    printf ("%s: features [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "] from "
            "layers %s, %d prompt tokens + %d padding, encoded in %.2f s\n",
            out, f.shape[0], f.shape[1], layer_list->str, n_real,
            BN_KLEIN_MAX_LENGTH - n_real, (t1 - t0) / 1e6);
  bn_st_writer_free (w);
  bn_tensor_clear (&f);
  g_string_free (layer_list, TRUE);
  return ok;
}

/* The lines of `path`, each a prompt: a final newline ends the last line
 * rather than starting an empty one, and a line's trailing CR (a file
 * written on Windows) is not part of it.  NULL with error when the file
 * cannot be read, is not UTF-8 or holds no line. */
static char **
read_prompts (const char *path, guint *n, GError **error)
{
  g_autofree char *text = NULL;
  gsize len;
  GError *local = NULL;
  if (!g_file_get_contents (path, &text, &len, &local))
    {
      g_set_error (error, BONSAI_ERROR,
                   g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT)
                     ? BONSAI_ERROR_NOT_FOUND : BONSAI_ERROR_IO,
                   "%s", local->message);
      g_error_free (local);
      return NULL;
    }
  const char *bad;
  if (!g_utf8_validate (text, (gssize) len, &bad))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: not UTF-8 at byte %" G_GSIZE_FORMAT, path,
                   (gsize) (bad - text));
      return NULL;
    }
  if (len > 0 && text[len - 1] == '\n')
    text[len - 1] = '\0';
  if (len == 0)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "%s: no prompts", path);
      return NULL;
    }
  char **lines = g_strsplit (text, "\n", -1);
  *n = g_strv_length (lines);
  for (guint i = 0; i < *n; i++)
    {
      size_t l = strlen (lines[i]);
      if (l > 0 && lines[i][l - 1] == '\r')
        lines[i][l - 1] = '\0';
    }
  return lines;
}

static gboolean
encode_prompts (const char *model, const char *tok_option,
                const char *prompts_path, const char *out, int threads,
                GError **error)
{
  guint n;
  g_auto (GStrv) prompts = read_prompts (prompts_path, &n, error);
  if (!prompts)
    return FALSE;
  g_autofree char *encoder = bn_qwen3_find_dir (model, error);
  if (!encoder)
    return FALSE;
  g_autofree char *tok_path = find_tokenizer (tok_option, model, encoder, error);
  if (!tok_path)
    return FALSE;
  g_autoptr (BnTokenizer) tok = bn_tokenizer_load (tok_path, error);
  if (!tok)
    return FALSE;
  /* Pages stay resident: every prompt runs every layer again. */
  const BnQwen3Options opts = { .keep_pages = TRUE };
  BnQwen3 *m = bn_qwen3_open (encoder, &opts, error);
  if (!m)
    return FALSE;
  const int64_t L = BN_KLEIN_MAX_LENGTH, C = bn_qwen3_feature_dim (m);
  int n_out;
  const int *layers = bn_qwen3_out_layers (m, &n_out);
  g_autoptr (GString) layer_list = g_string_new (NULL);
  for (int i = 0; i < n_out; i++)
    g_string_append_printf (layer_list, "%s%d", i ? "," : "", layers[i]);
  uint16_t *feats = g_try_new (uint16_t, (gsize) n * L * C);
  int64_t *ids64 = g_try_new (int64_t, (gsize) n * L);
  int64_t *mask64 = g_try_new (int64_t, (gsize) n * L);
  BnThreadPool *pool = NULL;
  gboolean ok = feats && ids64 && mask64;
  if (!ok)
    g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                 "no memory for the features of %u prompts (%.1f GB)", n,
                 (double) n * L * C * 2 / 1e9);
  ok = ok && (pool = bn_thread_pool_new (threads, error)) != NULL;
  gint64 t0 = g_get_monotonic_time ();
  for (guint p = 0; ok && p < n; p++)
    {
      int32_t ids[BN_KLEIN_MAX_LENGTH];
      uint8_t mask[BN_KLEIN_MAX_LENGTH];
      int n_real;
      BnTensor f = { 0 };
      ok = bn_tokenizer_klein_prompt (tok, prompts[p], BN_KLEIN_MAX_LENGTH, ids,
                                      mask, &n_real, error)
           && bn_qwen3_encode (m, pool, ids, mask, L, &f, error);
      if (!ok)
        {
          g_prefix_error (error, "%s line %u: ", prompts_path, p + 1);
          break;
        }
      const float *src = f.data;
      uint16_t *dst = feats + (gsize) p * L * C;
      for (int64_t i = 0; i < L * C; i++)
        dst[i] = bn_f32_to_f16 (src[i]);
      for (int64_t i = 0; i < L; i++)
        {
          ids64[p * L + i] = ids[i];
          mask64[p * L + i] = mask[i];
        }
      bn_tensor_clear (&f);
      if ((p + 1) % 100 == 0 && p + 1 < n)
        fprintf (stderr, "encode-prompt: %u of %u prompts, %.1f s\n", p + 1, n,
                 (g_get_monotonic_time () - t0) / 1e6);
    }
  gint64 t1 = g_get_monotonic_time ();
  bn_qwen3_free (m);
  bn_thread_pool_free (pool);

  const int64_t fshape[3] = { n, L, C }, ishape[2] = { n, L };
  BnStWriter *w = bn_st_writer_new ();
  bn_st_writer_set_metadata (w, "out_layers", layer_list->str);
  bn_st_writer_set_metadata (w, "text_encoder", encoder);
  ok = ok
       && bn_st_writer_add (w, "features", BN_DTYPE_F16, 3, fshape, feats, error)
       && bn_st_writer_add (w, "input_ids", BN_DTYPE_I64, 2, ishape, ids64, error)
       && bn_st_writer_add (w, "attention_mask", BN_DTYPE_I64, 2, ishape, mask64, error)
       && bn_st_writer_write (w, out, error);
  if (ok)
    printf ("%s: features [%u, %" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "] f16 "
            "from layers %s, encoded in %.2f s\n", out, n, L, C,
            layer_list->str, (t1 - t0) / 1e6);
  bn_st_writer_free (w);
  g_free (feats);
  g_free (ids64);
  g_free (mask64);
  return ok;
}

int
bn_cmd_encode_prompt (int argc, char **argv)
{
  g_autofree char *model = NULL, *tokenizer = NULL, *out = NULL;
  g_autofree char *prompts = NULL;
  int threads = 0;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model,
      "A text encoder folder, or a release folder holding "
      "text_encoder-mlx-4bit/ or text_encoder/", "DIR" },
    { "tokenizer", 0, 0, G_OPTION_ARG_FILENAME, &tokenizer,
      "tokenizer.json or a folder holding it (default: beside the model)",
      "FILE|DIR" },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &out,
      "The safetensors file to write", "FILE" },
    { "prompts", 0, 0, G_OPTION_ARG_FILENAME, &prompts,
      "Encode every line of FILE instead of TEXT: features f16 [n, 512, C]",
      "FILE" },
    { "threads", 0, 0, G_OPTION_ARG_INT, &threads,
      "Worker threads (default: one per processor)", "N" },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("TEXT | --prompts FILE");
  g_option_context_set_summary (ctx,
      "Encodes TEXT with the klein prompt template and the Qwen3 text "
      "encoder, and writes the features (f32 [512, 7680] for klein 4B), "
      "input_ids and attention_mask as safetensors.  With --prompts, every "
      "line of FILE is a prompt, encoded by one loaded encoder into "
      "features f16 [n, 512, C] and input_ids, attention_mask I64 [n, 512].");
  g_option_context_add_main_entries (ctx, entries, NULL);
  GError *error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return bn_cli_fail (error);
  if (argc != (prompts ? 1 : 2) || !model || !out)
    {
      g_autofree char *help = g_option_context_get_help (ctx, TRUE, NULL);
      fprintf (stderr, "%s", help);
      return 2;
    }
  if (prompts ? !encode_prompts (model, tokenizer, prompts, out, threads, &error)
              : !encode_prompt (model, tokenizer, argv[1], out, threads, &error))
    return bn_cli_fail (error);
  return 0;
}
