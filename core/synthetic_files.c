/* synthetic_files.c — configs, indexes, tokenizer files and notes of a
 * synthetic release folder. */
#include "synthetic_files.h"

#include "bonsai/bonsai.h"
#include "tokenizer.h"

#include <errno.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

#define DIFFUSERS_VERSION "0.37.0.dev0"
#define TRANSFORMERS_VERSION "4.51.0"
/* Ids of the real Qwen tokenizer's <|endoftext|> and <|im_end|>. */
#define QWEN_BOS_ID 151643
#define QWEN_EOS_ID 151645

/* ---- files ----------------------------------------------------------------- */

gboolean
bn_synth_write_text (const char *dir, const char *name, const char *text,
                     gssize len, GError **error)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  GError *local = NULL;
  /* g_file_set_contents writes a temporary file and renames it. */
  if (!g_file_set_contents (path, text, len, &local))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "%s", local->message);
      g_error_free (local);
      return FALSE;
    }
  return TRUE;
}

gboolean
bn_synth_make_dir (const char *path, GError **error)
{
  if (g_mkdir_with_parents (path, 0755) != 0)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "cannot create %s: %s",
                   path, g_strerror (errno));
      return FALSE;
    }
  return TRUE;
}

/* ---- JSON building ------------------------------------------------------------ */

static void
put_str (JsonBuilder *b, const char *key, const char *v)
{
  json_builder_set_member_name (b, key);
  if (v)
    json_builder_add_string_value (b, v);
  else
    json_builder_add_null_value (b);
}

static void
put_int (JsonBuilder *b, const char *key, gint64 v)
{
  json_builder_set_member_name (b, key);
  json_builder_add_int_value (b, v);
}

/* Integral values as integers, as Python writes an int-typed field. */
static void
put_num (JsonBuilder *b, const char *key, double v)
{
  json_builder_set_member_name (b, key);
  if (v == floor (v) && fabs (v) < 1e15)
    json_builder_add_int_value (b, (gint64) v);
  else
    json_builder_add_double_value (b, v);
}

static void
put_float (JsonBuilder *b, const char *key, double v)
{
  json_builder_set_member_name (b, key);
  json_builder_add_double_value (b, v);
}

static void
put_bool (JsonBuilder *b, const char *key, gboolean v)
{
  json_builder_set_member_name (b, key);
  json_builder_add_boolean_value (b, v);
}

static void
put_null (JsonBuilder *b, const char *key)
{
  json_builder_set_member_name (b, key);
  json_builder_add_null_value (b);
}

/* key: [a, b], how model_index.json names a part's library and class. */
static void
put_pair (JsonBuilder *b, const char *key, const char *a, const char *c)
{
  json_builder_set_member_name (b, key);
  json_builder_begin_array (b);
  json_builder_add_string_value (b, a);
  json_builder_add_string_value (b, c);
  json_builder_end_array (b);
}

static void
put_ints (JsonBuilder *b, const char *key, const int *v, int n)
{
  json_builder_set_member_name (b, key);
  json_builder_begin_array (b);
  for (int i = 0; i < n; i++)
    json_builder_add_int_value (b, v[i]);
  json_builder_end_array (b);
}

static void
put_repeated (JsonBuilder *b, const char *key, const char *v, int n)
{
  json_builder_set_member_name (b, key);
  json_builder_begin_array (b);
  for (int i = 0; i < n; i++)
    json_builder_add_string_value (b, v);
  json_builder_end_array (b);
}

/* The builder's object as text, indented by 2, ending in a newline; the
 * builder is freed. */
static char *
finish (JsonBuilder *b, gboolean pretty)
{
  json_builder_end_object (b);
  JsonNode *root = json_builder_get_root (b);
  JsonGenerator *gen = json_generator_new ();
  json_generator_set_pretty (gen, pretty);
  json_generator_set_indent (gen, 2);
  json_generator_set_root (gen, root);
  char *text = json_generator_to_data (gen, NULL);
  g_object_unref (gen);
  json_node_unref (root);
  g_object_unref (b);
  char *line = g_strconcat (text, "\n", NULL);
  g_free (text);
  return line;
}

static JsonBuilder *
start (void)
{
  JsonBuilder *b = json_builder_new ();
  json_builder_begin_object (b);
  return b;
}

/* ---- configs ------------------------------------------------------------------ */

char *
bn_synth_transformer_config (const BnSynthSpec *spec, BnSynthLayout layout)
{
  const BnFlux2Config *c = &spec->dit;
  gboolean unpacked = layout == BN_SYNTH_LAYOUT_UNPACKED;
  JsonBuilder *b = start ();
  put_str (b, "_class_name", "Flux2Transformer2DModel");
  put_str (b, "_diffusers_version", DIFFUSERS_VERSION);
  put_int (b, "attention_head_dim", c->head_dim);
  put_ints (b, "axes_dims_rope", c->axes_dim, c->n_axes);
  /* The unpacked release's config keeps three keys of the tools it was
   * trained with (§1.1); no loader reads them. */
  if (unpacked)
    put_bool (b, "enable_time_sign_embed", FALSE);
  put_float (b, "eps", c->eps);
  put_bool (b, "guidance_embeds", FALSE);
  put_int (b, "in_channels", c->in_channels);
  put_int (b, "joint_attention_dim", c->context_dim);
  put_float (b, "mlp_ratio", (double) c->mlp_hidden / c->dim);
  if (unpacked)
    {
      put_str (b, "musubi_block_swap_device", "cpu");
      put_int (b, "musubi_blocks_to_swap", 0);
    }
  put_int (b, "num_attention_heads", c->n_heads);
  put_int (b, "num_layers", c->num_layers);
  put_int (b, "num_single_layers", c->num_single_layers);
  /* diffusers writes the default (in_channels) as null. */
  put_null (b, "out_channels");
  put_int (b, "patch_size", 1);
  put_num (b, "rope_theta", c->rope_theta);
  put_int (b, "timestep_guidance_channels", c->time_channels);
  return finish (b, TRUE);
}

/* The nine dense matrices the release keeps in 16 bits (§1.2). */
static const char *const skip_patterns[] = {
  "x_embedder", "context_embedder", "proj_out", "norm_out.linear",
  "time_guidance_embed.timestep_embedder.linear_1",
  "time_guidance_embed.timestep_embedder.linear_2",
  "double_stream_modulation_img.linear", "double_stream_modulation_txt.linear",
  "single_stream_modulation.linear",
};

char *
bn_synth_quantization_config (const BnSynthSpec *spec, const GPtrArray *quantized)
{
  JsonBuilder *b = start ();
  put_int (b, "bits", spec->bits);
  put_int (b, "group_size", 128);
  /* INFERRED from the file's 5,054 bytes and the gemlite pack's config
   * (§1.4): the count and names of the packed and the skipped layers. */
  put_int (b, "quantized_count", quantized->len);
  json_builder_set_member_name (b, "quantized_fqns");
  json_builder_begin_array (b);
  for (guint i = 0; i < quantized->len; i++)
    json_builder_add_string_value (b, quantized->pdata[i]);
  json_builder_end_array (b);
  json_builder_set_member_name (b, "skip_patterns");
  json_builder_begin_array (b);
  for (size_t i = 0; i < G_N_ELEMENTS (skip_patterns); i++)
    json_builder_add_string_value (b, skip_patterns[i]);
  json_builder_end_array (b);
  put_int (b, "skipped_count", G_N_ELEMENTS (skip_patterns));
  put_str (b, "solver", spec->bits == 1 ? "binary" : "ternary");
  return finish (b, TRUE);
}

char *
bn_synth_vae_config (const BnSynthSpec *spec)
{
  JsonBuilder *b = start ();
  put_str (b, "_class_name", "AutoencoderKLFlux2");
  put_str (b, "_diffusers_version", DIFFUSERS_VERSION);
  put_str (b, "act_fn", "silu");
  put_float (b, "batch_norm_eps", 1e-4);
  put_float (b, "batch_norm_momentum", 0.1);
  put_ints (b, "block_out_channels", spec->vae_channels, spec->vae_levels);
  put_repeated (b, "down_block_types", "DownEncoderBlock2D", spec->vae_levels);
  put_bool (b, "force_upcast", TRUE);
  put_int (b, "in_channels", 3);
  put_int (b, "latent_channels", spec->vae_latent_channels);
  put_int (b, "layers_per_block", spec->vae_layers_per_block);
  put_bool (b, "mid_block_add_attention", TRUE);
  put_int (b, "norm_num_groups", spec->vae_groups);
  put_int (b, "out_channels", 3);
  put_ints (b, "patch_size", (const int[2]) { 2, 2 }, 2);
  put_int (b, "sample_size", 1024);
  put_repeated (b, "up_block_types", "UpDecoderBlock2D", spec->vae_levels);
  put_bool (b, "use_post_quant_conv", TRUE);
  put_bool (b, "use_quant_conv", TRUE);
  return finish (b, TRUE);
}

static void
put_quantization (JsonBuilder *b, const char *key, int group_size)
{
  json_builder_set_member_name (b, key);
  json_builder_begin_object (b);
  put_int (b, "group_size", group_size);
  put_int (b, "bits", 4);
  json_builder_end_object (b);
}

/* Qwen3-4B's config.json as BFL ships it (unpacked) or as mlx-lm rewrites
 * it (MLX: the older transformers keys, "quantization" twice). */
char *
bn_synth_text_encoder_config (const BnSynthSpec *spec, BnSynthLayout layout,
                              int group_size)
{
  gboolean mlx = layout == BN_SYNTH_LAYOUT_MLX;
  JsonBuilder *b = start ();
  json_builder_set_member_name (b, "architectures");
  json_builder_begin_array (b);
  json_builder_add_string_value (b, "Qwen3ForCausalLM");
  json_builder_end_array (b);
  put_bool (b, "attention_bias", FALSE);
  put_float (b, "attention_dropout", 0.0);
  if (mlx)
    {
      put_int (b, "bos_token_id", QWEN_BOS_ID);
      put_int (b, "eos_token_id", QWEN_EOS_ID);
    }
  else
    put_str (b, "dtype", "bfloat16");
  put_int (b, "head_dim", spec->te_head_dim);
  put_str (b, "hidden_act", "silu");
  put_int (b, "hidden_size", spec->te_hidden);
  if (mlx)
    put_float (b, "initializer_range", 0.02);
  put_int (b, "intermediate_size", spec->te_intermediate);
  if (!mlx)
    put_repeated (b, "layer_types", "full_attention", spec->te_layers);
  put_int (b, "max_position_embeddings", 40960);
  put_int (b, "max_window_layers", spec->te_layers);
  put_str (b, "model_type", "qwen3");
  put_int (b, "num_attention_heads", spec->te_heads);
  put_int (b, "num_hidden_layers", spec->te_layers);
  put_int (b, "num_key_value_heads", spec->te_kv_heads);
  if (mlx)
    {
      put_quantization (b, "quantization", group_size);
      put_quantization (b, "quantization_config", group_size);
    }
  put_float (b, "rms_norm_eps", 1e-6);
  put_null (b, "rope_scaling");
  put_int (b, "rope_theta", 1000000);
  put_null (b, "sliding_window");
  put_bool (b, "tie_word_embeddings", TRUE);
  if (mlx)
    {
      put_str (b, "torch_dtype", "bfloat16");
      put_str (b, "transformers_version", TRANSFORMERS_VERSION);
    }
  put_bool (b, "use_cache", TRUE);
  put_bool (b, "use_sliding_window", FALSE);
  put_int (b, "vocab_size", spec->te_vocab);
  return finish (b, TRUE);
}

typedef struct {
  const char *name;
  const char *shard;
} MapEntry;

static gint
compare_entries (gconstpointer a, gconstpointer b)
{
  return strcmp (((const MapEntry *) a)->name, ((const MapEntry *) b)->name);
}

char *
bn_synth_weight_index (const GPtrArray *names, const GPtrArray *shards,
                       guint64 total_size)
{
  g_autofree MapEntry *map = g_new (MapEntry, names->len);
  for (guint i = 0; i < names->len; i++)
    map[i] = (MapEntry) { names->pdata[i], shards->pdata[i] };
  qsort (map, names->len, sizeof *map, compare_entries);
  JsonBuilder *b = start ();
  json_builder_set_member_name (b, "metadata");
  json_builder_begin_object (b);
  put_int (b, "total_size", (gint64) total_size);
  json_builder_end_object (b);
  json_builder_set_member_name (b, "weight_map");
  json_builder_begin_object (b);
  for (guint i = 0; i < names->len; i++)
    put_str (b, map[i].name, map[i].shard);
  json_builder_end_object (b);
  return finish (b, TRUE);
}

/* ---- the release's other files ---------------------------------------------------- */

static char *
model_index (BnSynthLayout layout)
{
  JsonBuilder *b = start ();
  put_str (b, "_class_name", "Flux2KleinPipeline");
  put_str (b, "_diffusers_version", DIFFUSERS_VERSION);
  /* The MLX repos' model_index.json is 81 bytes: INFERRED to be just these
   * two keys, since its parts are in folders diffusers does not know. */
  if (layout == BN_SYNTH_LAYOUT_UNPACKED)
    {
      put_bool (b, "is_distilled", TRUE);
      put_pair (b, "scheduler", "diffusers", "FlowMatchEulerDiscreteScheduler");
      put_pair (b, "text_encoder", "transformers", "Qwen3ForCausalLM");
      put_pair (b, "tokenizer", "transformers", "Qwen2TokenizerFast");
      put_pair (b, "transformer", "diffusers", "Flux2Transformer2DModel");
      put_pair (b, "vae", "diffusers", "AutoencoderKLFlux2");
    }
  return finish (b, TRUE);
}

static char *
scheduler_config (void)
{
  JsonBuilder *b = start ();
  put_str (b, "_class_name", "FlowMatchEulerDiscreteScheduler");
  put_str (b, "_diffusers_version", DIFFUSERS_VERSION);
  put_int (b, "base_image_seq_len", 256);
  put_float (b, "base_shift", 0.5);
  put_bool (b, "invert_sigmas", FALSE);
  put_int (b, "max_image_seq_len", 4096);
  put_float (b, "max_shift", 1.15);
  put_int (b, "num_train_timesteps", 1000);
  put_float (b, "shift", 3.0);
  put_null (b, "shift_terminal");
  put_bool (b, "stochastic_sampling", FALSE);
  put_str (b, "time_shift_type", "exponential");
  put_bool (b, "use_beta_sigmas", FALSE);
  put_bool (b, "use_dynamic_shifting", TRUE);
  put_bool (b, "use_exponential_sigmas", FALSE);
  put_bool (b, "use_karras_sigmas", FALSE);
  return finish (b, TRUE);
}

/* Qwen3's generation defaults, beside the unpacked text encoder. */
static char *
generation_config (void)
{
  JsonBuilder *b = start ();
  put_int (b, "bos_token_id", QWEN_BOS_ID);
  put_bool (b, "do_sample", TRUE);
  put_ints (b, "eos_token_id", (const int[2]) { QWEN_EOS_ID, QWEN_BOS_ID }, 2);
  put_int (b, "pad_token_id", QWEN_BOS_ID);
  put_float (b, "temperature", 0.6);
  put_int (b, "top_k", 20);
  put_float (b, "top_p", 0.95);
  put_str (b, "transformers_version", TRANSFORMERS_VERSION);
  return finish (b, TRUE);
}

/* A single-turn ChatML template with the thinking switch klein turns off
 * (spec §3.2); written for these tests, not Qwen's own. */
static const char chat_template[] =
  "{%- for message in messages %}\n"
  "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}\n"
  "{%- endfor %}\n"
  "{%- if add_generation_prompt %}\n"
  "{{- '<|im_start|>assistant\\n' }}\n"
  "{%- if enable_thinking is defined and enable_thinking is false %}\n"
  "{{- '<think>\\n\\n</think>\\n\\n' }}\n"
  "{%- endif %}\n"
  "{%- endif %}\n";

/* ---- tokenizer files -------------------------------------------------------------- */

typedef struct {
  char *text;
  gsize len;
  JsonParser *parser;
  const char *path;
  JsonArray *added;     /* added_tokens */
  JsonNode *vocab;      /* model.vocab */
  JsonArray *merges;    /* model.merges */
} TokJson;

/* Reads and parses `path`; t->text keeps its bytes. */
static gboolean
tok_json_load (TokJson *t, const char *path, GError **error)
{
  memset (t, 0, sizeof *t);
  t->path = path;
  GError *local = NULL;
  if (!g_file_get_contents (path, &t->text, &t->len, &local))
    {
      g_set_error (error, BONSAI_ERROR,
                   g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT)
                     ? BONSAI_ERROR_NOT_FOUND : BONSAI_ERROR_IO,
                   "%s", local->message);
      g_error_free (local);
      return FALSE;
    }
  t->parser = json_parser_new ();
  if (!json_parser_load_from_data (t->parser, t->text, (gssize) t->len, &local))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT, "%s: %s", path,
                   local->message);
      g_error_free (local);
      return FALSE;
    }
  JsonNode *root = json_parser_get_root (t->parser);
  JsonObject *o = root && JSON_NODE_HOLDS_OBJECT (root) ? json_node_get_object (root) : NULL;
  JsonNode *added = o ? json_object_get_member (o, "added_tokens") : NULL;
  JsonNode *model = o ? json_object_get_member (o, "model") : NULL;
  JsonObject *mo = model && JSON_NODE_HOLDS_OBJECT (model) ? json_node_get_object (model) : NULL;
  JsonNode *merges = mo ? json_object_get_member (mo, "merges") : NULL;
  t->vocab = mo ? json_object_get_member (mo, "vocab") : NULL;
  gboolean ok = added && JSON_NODE_HOLDS_ARRAY (added) && merges
    && JSON_NODE_HOLDS_ARRAY (merges) && t->vocab && JSON_NODE_HOLDS_OBJECT (t->vocab);
  for (guint i = 0; ok && i < json_array_get_length (json_node_get_array (added)); i++)
    ok = JSON_NODE_HOLDS_OBJECT (json_array_get_element (json_node_get_array (added), i));
  if (ok)
    {
      t->added = json_node_get_array (added);
      t->merges = json_node_get_array (merges);
      return TRUE;
    }
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
               "%s: not a BPE tokenizer.json (added_tokens objects, model.vocab, "
               "model.merges)", path);
  return FALSE;
}

static void
tok_json_clear (TokJson *t)
{
  g_clear_object (&t->parser);
  g_free (t->text);
}

static gboolean
flag (JsonObject *tok, const char *key)
{
  JsonNode *n = json_object_get_member (tok, key);
  return n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_BOOLEAN
         && json_node_get_boolean (n);
}

static const char *
content (JsonObject *tok)
{
  JsonNode *n = json_object_get_member (tok, "content");
  return n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING
           ? json_node_get_string (n) : "";
}

/* Whether an added token goes in additional_special_tokens: a special one
 * other than the padding token. */
static gboolean
is_extra_special (JsonObject *tok)
{
  return flag (tok, "special") && strcmp (content (tok), BN_KLEIN_PAD_TOKEN) != 0;
}

static char *
vocab_json (const TokJson *t)
{
  JsonGenerator *gen = json_generator_new ();
  json_generator_set_root (gen, t->vocab);
  char *text = json_generator_to_data (gen, NULL);
  g_object_unref (gen);
  return text;
}

/* Merges are "a b" strings or, in newer files, ["a", "b"] pairs. */
static char *
merges_txt (const TokJson *t)
{
  GString *s = g_string_new ("#version: 0.2\n");
  for (guint i = 0; i < json_array_get_length (t->merges); i++)
    {
      JsonNode *m = json_array_get_element (t->merges, i);
      if (JSON_NODE_HOLDS_ARRAY (m) && json_array_get_length (json_node_get_array (m)) == 2)
        g_string_append_printf (s, "%s %s\n",
                                json_array_get_string_element (json_node_get_array (m), 0),
                                json_array_get_string_element (json_node_get_array (m), 1));
      else if (JSON_NODE_HOLDS_VALUE (m) && json_node_get_value_type (m) == G_TYPE_STRING)
        g_string_append_printf (s, "%s\n", json_node_get_string (m));
    }
  return g_string_free (s, FALSE);
}

static char *
added_tokens_json (const TokJson *t)
{
  JsonBuilder *b = start ();
  for (guint i = 0; i < json_array_get_length (t->added); i++)
    {
      JsonObject *tok = json_array_get_object_element (t->added, i);
      put_int (b, content (tok), json_object_get_int_member_with_default (tok, "id", 0));
    }
  return finish (b, TRUE);
}

static void
put_additional_special (JsonBuilder *b, const TokJson *t)
{
  json_builder_set_member_name (b, "additional_special_tokens");
  json_builder_begin_array (b);
  for (guint i = 0; i < json_array_get_length (t->added); i++)
    {
      JsonObject *tok = json_array_get_object_element (t->added, i);
      if (is_extra_special (tok))
        json_builder_add_string_value (b, content (tok));
    }
  json_builder_end_array (b);
}

/* The added token spelled `text`, or NULL. */
static JsonObject *
find_added (const TokJson *t, const char *text)
{
  for (guint i = 0; i < json_array_get_length (t->added); i++)
    {
      JsonObject *tok = json_array_get_object_element (t->added, i);
      if (!strcmp (content (tok), text))
        return tok;
    }
  return NULL;
}

/* A token with its flags, as special_tokens_map.json writes it. */
static void
put_token (JsonBuilder *b, const char *key, const TokJson *t, const char *text,
           gboolean with_special)
{
  JsonObject *tok = find_added (t, text);
  json_builder_set_member_name (b, key);
  json_builder_begin_object (b);
  put_str (b, "content", text);
  put_bool (b, "lstrip", tok && flag (tok, "lstrip"));
  put_bool (b, "normalized", tok && flag (tok, "normalized"));
  put_bool (b, "rstrip", tok && flag (tok, "rstrip"));
  put_bool (b, "single_word", tok && flag (tok, "single_word"));
  if (with_special)
    put_bool (b, "special", tok && flag (tok, "special"));
  json_builder_end_object (b);
}

static char *
special_tokens_map (const TokJson *t)
{
  JsonBuilder *b = start ();
  put_additional_special (b, t);
  put_token (b, "eos_token", t, "<|im_end|>", FALSE);
  put_token (b, "pad_token", t, BN_KLEIN_PAD_TOKEN, FALSE);
  return finish (b, TRUE);
}

/* tokenizer_config.json; the MLX text encoder's copy holds the chat
 * template itself, tokenizer/ has it in chat_template.jinja. */
static char *
tokenizer_config (const TokJson *t, gboolean inline_template)
{
  JsonBuilder *b = start ();
  put_bool (b, "add_bos_token", FALSE);
  put_bool (b, "add_prefix_space", FALSE);
  json_builder_set_member_name (b, "added_tokens_decoder");
  json_builder_begin_object (b);
  for (guint i = 0; i < json_array_get_length (t->added); i++)
    {
      JsonObject *tok = json_array_get_object_element (t->added, i);
      g_autofree char *id = g_strdup_printf ("%" G_GINT64_FORMAT,
                                             json_object_get_int_member_with_default (tok, "id", 0));
      put_token (b, id, t, content (tok), TRUE);
    }
  json_builder_end_object (b);
  put_additional_special (b, t);
  put_null (b, "bos_token");
  if (inline_template)
    put_str (b, "chat_template", chat_template);
  put_bool (b, "clean_up_tokenization_spaces", FALSE);
  put_str (b, "eos_token", "<|im_end|>");
  put_str (b, "errors", "replace");
  put_int (b, "model_max_length", 131072);
  put_str (b, "pad_token", BN_KLEIN_PAD_TOKEN);
  put_bool (b, "split_special_tokens", FALSE);
  put_str (b, "tokenizer_class", "Qwen2Tokenizer");
  put_null (b, "unk_token");
  return finish (b, TRUE);
}

/* The tokenizer files, derived from tokenizer.json once for both folders
 * that hold them. */
typedef struct {
  char *vocab, *merges, *added, *special, *config, *config_inline;
} TokFiles;

static void
tok_files_make (TokFiles *f, const TokJson *t)
{
  f->vocab = vocab_json (t);
  f->merges = merges_txt (t);
  f->added = added_tokens_json (t);
  f->special = special_tokens_map (t);
  f->config = tokenizer_config (t, FALSE);
  f->config_inline = tokenizer_config (t, TRUE);
}

static void
tok_files_clear (TokFiles *f)
{
  g_free (f->vocab);
  g_free (f->merges);
  g_free (f->added);
  g_free (f->special);
  g_free (f->config);
  g_free (f->config_inline);
}

/* The tokenizer files of one folder: tokenizer.json as given, the rest
 * derived from it. */
static gboolean
write_tokenizer_files (const char *dir, const TokJson *t, const TokFiles *f,
                       gboolean inline_template, GError **error)
{
  return bn_synth_make_dir (dir, error)
         && bn_synth_write_text (dir, "tokenizer.json", t->text, (gssize) t->len, error)
         && bn_synth_write_text (dir, "vocab.json", f->vocab, -1, error)
         && bn_synth_write_text (dir, "merges.txt", f->merges, -1, error)
         && bn_synth_write_text (dir, "added_tokens.json", f->added, -1, error)
         && bn_synth_write_text (dir, "special_tokens_map.json", f->special, -1, error)
         && bn_synth_write_text (dir, "tokenizer_config.json",
                                 inline_template ? f->config_inline : f->config, -1, error)
         && (inline_template
             || bn_synth_write_text (dir, "chat_template.jinja", chat_template, -1, error));
}

/* tokenizer/ of release folder `dir` and, with `mlx_copy`, the MLX text
 * encoder's copy (the release has no other). */
static gboolean
write_tokenizer (const char *dir, const char *tokenizer_json, gboolean mlx_copy,
                 GError **error)
{
  TokJson t;
  if (!tok_json_load (&t, tokenizer_json, error))
    {
      tok_json_clear (&t);
      return FALSE;
    }
  g_autofree char *tok_dir = g_build_filename (dir, "tokenizer", NULL);
  g_autofree char *te_dir = g_build_filename (dir, "text_encoder-mlx-4bit", NULL);
  TokFiles files;
  tok_files_make (&files, &t);
  gboolean ok = write_tokenizer_files (tok_dir, &t, &files, FALSE, error)
    && (!mlx_copy || write_tokenizer_files (te_dir, &t, &files, TRUE, error));
  tok_files_clear (&files);
  tok_json_clear (&t);
  return ok;
}

gboolean
bn_synth_write_tokenizer (const char *dir, const char *tokenizer_json,
                          GError **error)
{
  g_autofree char *te_dir = g_build_filename (dir, "text_encoder-mlx-4bit", NULL);
  return write_tokenizer (dir, tokenizer_json,
                          g_file_test (te_dir, G_FILE_TEST_IS_DIR), error);
}

/* ---- the release -------------------------------------------------------------------- */

gboolean
bn_synth_write_release_notes (const char *dir, int bits, BnSynthLayout layout,
                              gboolean trained, GError **error)
{
  gboolean mlx = layout == BN_SYNTH_LAYOUT_MLX;
  const char *variant = bits == 1 ? "binary" : bits == 2 ? "ternary" : "bf16";
  g_autofree char *index = model_index (layout);
  g_autofree char *manifest = bits == 16
    ? g_strdup ("{\n  \"model_version\": \"bf16 (unquantized master)\"\n}\n")
    : g_strdup_printf ("{\n  \"model_version\": \"%s g128 (bf16 master)\"\n}\n",
                       variant);
  g_autofree char *readme = trained
    ? g_strdup_printf ("# Bonsai Image %s model\n\n"
                       "Trained weights in the file layout of the Bonsai Image "
                       "releases,\nwritten by `bonsai-image export-release`.\n",
                       variant)
    : g_strdup_printf ("# Synthetic Bonsai Image %s model\n\n"
                       "Random weights in the file layout of prism-ml/bonsai-image-%s-4B-%s,\n"
                       "written by Bonsai Image's tests.  It draws noise, not pictures.\n",
                       variant, variant,
                       mlx ? (bits == 1 ? "mlx-1bit" : "mlx-2bit") : "unpacked");
  const char *license = trained
    ? "The licence of these weights is their trainer's to state here.\n"
    : "Synthetic test data: random numbers with no rights attached.\n";
  const char *notice = trained
    ? "# Notice\n\nThe text encoder and tokenizer are copied from the release "
      "this model was exported with.\n"
    : "# Notice\n\nNo part of any released model is in this folder.\n";
  return bn_synth_write_text (dir, "model_index.json", index, -1, error)
         && bn_synth_write_text (dir, "manifest.json", manifest, -1, error)
         && bn_synth_write_text (dir, "README.md", readme, -1, error)
         && bn_synth_write_text (dir, "LICENSE", license, -1, error)
         && (!mlx || bn_synth_write_text (dir, "NOTICE.md", notice, -1, error));
}

gboolean
bn_synth_write_release_files (const char *dir, const BnSynthSpec *spec,
                              BnSynthLayout layout, const char *tokenizer_json,
                              GError **error)
{
  gboolean mlx = layout == BN_SYNTH_LAYOUT_MLX;
  g_autofree char *te_dir = g_build_filename (dir, mlx ? "text_encoder-mlx-4bit"
                                                      : "text_encoder", NULL);
  g_autofree char *sched_dir = g_build_filename (dir, "scheduler", NULL);
  g_autofree char *sched = scheduler_config ();
  g_autofree char *gen = generation_config ();
  return write_tokenizer (dir, tokenizer_json, mlx, error)
    && (mlx || bn_synth_write_text (te_dir, "generation_config.json", gen, -1, error))
    && bn_synth_make_dir (sched_dir, error)
    && bn_synth_write_text (sched_dir, "scheduler_config.json", sched, -1, error)
    && bn_synth_write_release_notes (dir, spec->bits, layout, FALSE, error);
}
