/* test-layouts.c — the release folders as the Hugging Face repositories
 * lay them out (research/bonsai_release.md §1.1): tiny synthetic copies of
 * the MLX and the unpacked layout have every file and config key of the
 * real ones, open, and generate from a prompt; a folder missing a part is
 * refused with a message naming it. */
#include "release-fixture.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

/* ---- files and keys ------------------------------------------------------- */

/* Every file of the ternary MLX repository (the pinned list of §1.1). */
static const char *const mlx_files[] = {
  "LICENSE", "NOTICE.md", "README.md", "manifest.json", "model_index.json",
  "scheduler/scheduler_config.json",
  "text_encoder-mlx-4bit/added_tokens.json", "text_encoder-mlx-4bit/config.json",
  "text_encoder-mlx-4bit/merges.txt", "text_encoder-mlx-4bit/model.safetensors",
  "text_encoder-mlx-4bit/model.safetensors.index.json",
  "text_encoder-mlx-4bit/special_tokens_map.json", "text_encoder-mlx-4bit/tokenizer.json",
  "text_encoder-mlx-4bit/tokenizer_config.json", "text_encoder-mlx-4bit/vocab.json",
  "tokenizer/added_tokens.json", "tokenizer/chat_template.jinja", "tokenizer/merges.txt",
  "tokenizer/special_tokens_map.json", "tokenizer/tokenizer.json",
  "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
  "transformer-packed-mflux/config.json",
  "transformer-packed-mflux/diffusion_pytorch_model.safetensors",
  "transformer-packed-mflux/quantization_config.json",
  "vae/config.json", "vae/diffusion_pytorch_model.safetensors", NULL
};

/* The unpacked repository: FLUX.2-klein-4B's diffusers files with the
 * release's notes. */
static const char *const unpacked_files[] = {
  "LICENSE", "README.md", "manifest.json", "model_index.json",
  "scheduler/scheduler_config.json",
  "text_encoder/config.json", "text_encoder/generation_config.json",
  "text_encoder/model-00001-of-00002.safetensors",
  "text_encoder/model-00002-of-00002.safetensors",
  "text_encoder/model.safetensors.index.json",
  "tokenizer/added_tokens.json", "tokenizer/chat_template.jinja", "tokenizer/merges.txt",
  "tokenizer/special_tokens_map.json", "tokenizer/tokenizer.json",
  "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
  "transformer/config.json", "transformer/diffusion_pytorch_model.safetensors",
  "vae/config.json", "vae/diffusion_pytorch_model.safetensors", NULL
};

static void
list_files (const char *root, const char *rel, GPtrArray *out)
{
  g_autofree char *path = rel ? g_build_filename (root, rel, NULL) : g_strdup (root);
  GDir *dir = g_dir_open (path, 0, NULL);
  g_assert_nonnull (dir);
  const char *name;
  while ((name = g_dir_read_name (dir)))
    {
      g_autofree char *sub = rel ? g_strconcat (rel, "/", name, NULL) : g_strdup (name);
      g_autofree char *full = g_build_filename (root, sub, NULL);
      if (g_file_test (full, G_FILE_TEST_IS_DIR))
        list_files (root, sub, out);
      else
        g_ptr_array_add (out, g_steal_pointer (&sub));
    }
  g_dir_close (dir);
}

static gint
compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* The folder holds exactly `want` (no more: no temporary files left). */
static void
assert_files (const char *root, const char *const *want)
{
  g_autoptr (GPtrArray) have = g_ptr_array_new_with_free_func (g_free);
  list_files (root, NULL, have);
  g_ptr_array_sort (have, compare_strings);
  guint n = g_strv_length ((char **) want);
  for (guint i = 0; i < MAX (n, have->len); i++)
    {
      const char *h = i < have->len ? have->pdata[i] : "(none)";
      const char *w = i < n ? want[i] : "(none)";
      if (strcmp (h, w))
        g_error ("%s: file %u is %s, expected %s", root, i, h, w);
    }
}

/* The keys of the JSON object in root/rel, sorted, joined by spaces. */
static char *
keys_of (const char *root, const char *rel)
{
  g_autofree char *path = g_build_filename (root, rel, NULL);
  g_autoptr (JsonParser) parser = json_parser_new ();
  GError *error = NULL;
  g_assert_true (json_parser_load_from_file (parser, path, &error));
  g_assert_no_error (error);
  JsonObject *o = json_node_get_object (json_parser_get_root (parser));
  GList *members = g_list_sort (json_object_get_members (o), (GCompareFunc) strcmp);
  GString *s = g_string_new (NULL);
  for (GList *l = members; l; l = l->next)
    g_string_append_printf (s, "%s%s", s->len ? " " : "", (const char *) l->data);
  g_list_free (members);
  return g_string_free (s, FALSE);
}

#define DIT_KEYS "_class_name _diffusers_version attention_head_dim axes_dims_rope "
#define DIT_KEYS_2 "guidance_embeds in_channels joint_attention_dim mlp_ratio "
#define DIT_KEYS_3 "num_attention_heads num_layers num_single_layers out_channels " \
  "patch_size rope_theta timestep_guidance_channels"

static void
test_files_and_keys (void)
{
  g_autofree char *mlx = fixture_release ("mlx", BN_SYNTH_LAYOUT_MLX, NULL);
  g_autofree char *unp = fixture_release ("unpacked", BN_SYNTH_LAYOUT_UNPACKED, NULL);
  if (!mlx || !unp)
    return;
  assert_files (mlx, mlx_files);
  assert_files (unp, unpacked_files);

  /* The keys FLUX.2-klein-4B's diffusers configs have (§1.1, spec "HF"). */
  const struct {
    const char *dir, *file, *keys;
  } cases[] = {
    { unp, "model_index.json", "_class_name _diffusers_version is_distilled scheduler "
      "text_encoder tokenizer transformer vae" },
    { mlx, "model_index.json", "_class_name _diffusers_version" },
    { mlx, "scheduler/scheduler_config.json", "_class_name _diffusers_version "
      "base_image_seq_len base_shift invert_sigmas max_image_seq_len max_shift "
      "num_train_timesteps shift shift_terminal stochastic_sampling time_shift_type "
      "use_beta_sigmas use_dynamic_shifting use_exponential_sigmas use_karras_sigmas" },
    { mlx, "transformer-packed-mflux/config.json", DIT_KEYS "eps " DIT_KEYS_2 DIT_KEYS_3 },
    /* The unpacked release adds its training tool's three keys. */
    { unp, "transformer/config.json", DIT_KEYS "enable_time_sign_embed eps " DIT_KEYS_2
      "musubi_block_swap_device musubi_blocks_to_swap " DIT_KEYS_3 },
    { unp, "vae/config.json", "_class_name _diffusers_version act_fn batch_norm_eps "
      "batch_norm_momentum block_out_channels down_block_types force_upcast in_channels "
      "latent_channels layers_per_block mid_block_add_attention norm_num_groups "
      "out_channels patch_size sample_size up_block_types use_post_quant_conv use_quant_conv" },
    { unp, "text_encoder/config.json", "architectures attention_bias attention_dropout "
      "dtype head_dim hidden_act hidden_size intermediate_size layer_types "
      "max_position_embeddings max_window_layers model_type num_attention_heads "
      "num_hidden_layers num_key_value_heads rms_norm_eps rope_scaling rope_theta "
      "sliding_window tie_word_embeddings use_cache use_sliding_window vocab_size" },
    { unp, "text_encoder/model.safetensors.index.json", "metadata weight_map" },
    { mlx, "text_encoder-mlx-4bit/model.safetensors.index.json", "metadata weight_map" },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *keys = keys_of (cases[i].dir, cases[i].file);
      g_assert_cmpstr (keys, ==, cases[i].keys);
    }
  /* Partly known files: the keys loaders read must be there. */
  g_autofree char *quant = keys_of (mlx, "transformer-packed-mflux/quantization_config.json");
  g_autofree char *te = keys_of (mlx, "text_encoder-mlx-4bit/config.json");
  const char *const quant_keys[] = { "bits", "group_size", "solver", "skip_patterns" };
  const char *const te_keys[] = { "quantization", "hidden_size", "num_hidden_layers",
                                  "vocab_size", "tie_word_embeddings" };
  for (size_t i = 0; i < G_N_ELEMENTS (quant_keys); i++)
    g_assert_nonnull (strstr (quant, quant_keys[i]));
  for (size_t i = 0; i < G_N_ELEMENTS (te_keys); i++)
    g_assert_nonnull (strstr (te, te_keys[i]));
}

/* ---- generating ---------------------------------------------------------------- */

static BonsaiImage *
generate (BonsaiModel *model, const char *prompt, const BonsaiTensor *features)
{
  BonsaiRequest req;
  bonsai_request_init (&req);
  req.prompt = prompt;
  req.features = features;
  req.width = 48;
  req.height = 32;
  req.steps = 2;
  req.seed = 3;
  req.format = BONSAI_PIXEL_RGB_F32;
  BonsaiImage *img = NULL;
  GError *error = NULL;
  g_assert_true (bonsai_generate (model, &req, NULL, NULL, &img, &error));
  g_assert_no_error (error);
  const float *px = img->pixels;
  float lo = INFINITY, hi = -INFINITY;
  for (int i = 0; i < img->width * img->height * 3; i++)
    {
      g_assert_true (isfinite (px[i]));
      lo = MIN (lo, px[i]);
      hi = MAX (hi, px[i]);
    }
  g_assert_cmpfloat (hi - lo, >, 0.01f);  /* a picture, not a flat fill */
  return img;
}

/* A layout opens and generates from a prompt through its own text encoder
 * and tokenizer. */
static void
test_generate (gconstpointer data)
{
  BnSynthLayout layout = GPOINTER_TO_INT (data);
  g_autofree char *dir = fixture_release (layout == BN_SYNTH_LAYOUT_MLX ? "mlx" : "unpacked",
                                          layout, NULL);
  if (!dir)
    return;
  GError *error = NULL;
  BonsaiModel *model = bonsai_model_open (dir, &error);
  g_assert_no_error (error);
  BonsaiCacheStats before, after;
  bonsai_cache_stats (&before);
  BonsaiImage *img = generate (model, "A bonsai tree on a windowsill, morning light", NULL);
  bonsai_cache_stats (&after);
  g_assert_cmpuint (after.prompt_encodes, ==, before.prompt_encodes + 1);
  bonsai_image_free (img);
  bonsai_model_unref (model);
}

/* Both layouts carry the same transformer and VAE (the unpacked one as the
 * dense values of the MLX pack), so given the same prompt features they
 * draw the same image, up to the kernels' summation order. */
static void
test_same_image (void)
{
  BnSynthSpec spec;
  g_autofree char *mlx = fixture_release ("mlx", BN_SYNTH_LAYOUT_MLX, &spec);
  g_autofree char *unp = fixture_release ("unpacked", BN_SYNTH_LAYOUT_UNPACKED, NULL);
  if (!mlx || !unp)
    return;
  GError *error = NULL;
  BonsaiModel *a = bonsai_model_open (mlx, &error);
  g_assert_no_error (error);
  BonsaiModel *b = bonsai_model_open (unp, &error);
  g_assert_no_error (error);
  g_assert_true (a != b);
  const gint64 shape[2] = { 20, spec.dit.context_dim };
  BonsaiTensor *feats = bonsai_tensor_new (2, shape, &error);
  for (gint64 i = 0; i < shape[0] * shape[1]; i++)
    feats->data[i] = sinf ((float) i * 0.37f);
  BonsaiImage *ia = generate (a, NULL, feats);
  BonsaiImage *ib = generate (b, NULL, feats);
  float worst = 0;
  for (int i = 0; i < ia->width * ia->height * 3; i++)
    worst = MAX (worst, fabsf (((float *) ia->pixels)[i] - ((float *) ib->pixels)[i]));
  g_test_message ("MLX vs unpacked layout: largest pixel difference %.2e", worst);
  g_assert_cmpfloat (worst, <, 1e-3f);
  bonsai_image_free (ia);
  bonsai_image_free (ib);
  bonsai_tensor_free (feats);
  bonsai_model_unref (a);
  bonsai_model_unref (b);
}

/* ---- broken folders ------------------------------------------------------------- */

/* Opening `dir` fails with `code` and a message holding `what` (and
 * `also`, when not NULL). */
static void
assert_refused (const char *dir, int code, const char *what, const char *also)
{
  GError *error = NULL;
  BonsaiModel *m = bonsai_model_open (dir, &error);
  g_assert_null (m);
  g_assert_error (error, BONSAI_ERROR, code);
  g_test_message ("%s", error->message);
  if (!strstr (error->message, what) || (also && !strstr (error->message, also)))
    g_error ("\"%s\" does not name %s%s%s", error->message, what, also ? " and " : "",
             also ? also : "");
  g_clear_error (&error);
}

/* Moves dir/rel away while `check` runs, then back. */
static void
without (const char *dir, const char *rel, int code, const char *what, const char *also)
{
  g_autofree char *path = g_build_filename (dir, rel, NULL);
  g_autofree char *away = g_strconcat (path, ".away", NULL);
  g_assert_cmpint (g_rename (path, away), ==, 0);
  assert_refused (dir, code, what, also);
  g_assert_cmpint (g_rename (away, path), ==, 0);
}

/* Replaces dir/rel by `text` while opening is refused, then restores it. */
static void
with_text (const char *dir, const char *rel, const char *text, const char *what,
           const char *also)
{
  g_autofree char *path = g_build_filename (dir, rel, NULL);
  g_autofree char *saved = NULL;
  g_assert_true (g_file_get_contents (path, &saved, NULL, NULL));
  g_assert_true (g_file_set_contents (path, text, -1, NULL));
  assert_refused (dir, BONSAI_ERROR_FORMAT, what, also);
  g_assert_true (g_file_set_contents (path, saved, -1, NULL));
}

static void
test_missing_parts (void)
{
  g_autofree char *mlx = fixture_release ("mlx", BN_SYNTH_LAYOUT_MLX, NULL);
  g_autofree char *unp = fixture_release ("unpacked", BN_SYNTH_LAYOUT_UNPACKED, NULL);
  if (!mlx || !unp)
    return;
  without (unp, "vae", BONSAI_ERROR_NOT_FOUND, "vae/", NULL);
  without (mlx, "vae", BONSAI_ERROR_NOT_FOUND, "vae/", NULL);
  without (unp, "transformer", BONSAI_ERROR_NOT_FOUND, "transformer/", NULL);
  without (mlx, "transformer-packed-mflux", BONSAI_ERROR_NOT_FOUND,
           "transformer-packed-mflux/", NULL);
  /* model_index.json lists the unpacked text encoder: it must be there. */
  without (unp, "text_encoder", BONSAI_ERROR_NOT_FOUND, "text_encoder", "model_index.json");
  without (unp, "scheduler", BONSAI_ERROR_NOT_FOUND, "scheduler", "model_index.json");
  without (unp, "tokenizer/tokenizer.json", BONSAI_ERROR_NOT_FOUND, "tokenizer.json", NULL);
  without (unp, "text_encoder/config.json", BONSAI_ERROR_NOT_FOUND, "config.json", NULL);
  without (mlx, "text_encoder-mlx-4bit/model.safetensors", BONSAI_ERROR_NOT_FOUND,
           "model.safetensors", NULL);
  without (mlx, "vae/diffusion_pytorch_model.safetensors", BONSAI_ERROR_NOT_FOUND,
           "vae", NULL);
  without (mlx, "scheduler/scheduler_config.json", BONSAI_ERROR_NOT_FOUND,
           "scheduler_config.json", NULL);

  with_text (unp, "model_index.json", "{\"_class_name\": \"StableDiffusionPipeline\"}",
             "StableDiffusionPipeline", "model_index.json");
  with_text (mlx, "model_index.json", "{\"_class_name\": ", "model_index.json", NULL);
  with_text (mlx, "scheduler/scheduler_config.json",
             "{\"_class_name\": \"DDIMScheduler\"}", "DDIMScheduler", NULL);

  /* The MLX index lists no parts: without a text encoder the model still
   * opens and draws from given features, and a prompt is refused. */
  g_autofree char *te = g_build_filename (mlx, "text_encoder-mlx-4bit", NULL);
  g_autofree char *te_away = g_strconcat (te, ".away", NULL);
  g_assert_cmpint (g_rename (te, te_away), ==, 0);
  GError *error = NULL;
  BonsaiModel *model = bonsai_model_open (mlx, &error);
  g_assert_no_error (error);
  BonsaiRequest req;
  bonsai_request_init (&req);
  req.prompt = "a bonsai";
  req.width = req.height = 32;
  BonsaiImage *img = NULL;
  g_assert_false (bonsai_generate (model, &req, NULL, NULL, &img, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_clear_error (&error);
  bonsai_model_unref (model);
  g_assert_cmpint (g_rename (te_away, te), ==, 0);
}

/* A tokenizer.json of three tokens: enough for the writer, whose other
 * tokenizer files derive from it. */
static const char small_tokenizer[] =
  "{\"added_tokens\": [{\"id\": 3, \"content\": \"<|endoftext|>\", \"single_word\": false, "
  "\"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}, "
  "{\"id\": 4, \"content\": \"<|im_end|>\", \"single_word\": false, \"lstrip\": false, "
  "\"rstrip\": false, \"normalized\": false, \"special\": true}], "
  "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, "
  "\"merges\": [[\"a\", \"b\"]]}}";

/* The tiny model with a text encoder twice as wide (features 384, not the
 * transformer's 192), written once with the small tokenizer. */
static char *
wide_release (void)
{
  char *dir = fixture_path ("wide-text-encoder");
  if (g_file_test (dir, G_FILE_TEST_IS_DIR))
    return dir;
  g_autofree char *tok = fixture_path ("small-tokenizer.json");
  g_assert_true (g_file_set_contents (tok, small_tokenizer, -1, NULL));
  BnSynthSpec spec;
  bn_synth_spec_tiny (&spec, 1);
  spec.te_hidden = 128;
  spec.dit.context_dim = 3 * 128;
  GError *error = NULL;
  g_assert_true (bn_synthetic_release_write (dir, &spec, BN_SYNTH_LAYOUT_MLX, tok, 1, &error));
  g_assert_no_error (error);
  return dir;
}

static void
assert_text (const char *dir, const char *rel, const char *want)
{
  g_autofree char *path = g_build_filename (dir, rel, NULL);
  g_autofree char *have = NULL;
  g_assert_true (g_file_get_contents (path, &have, NULL, NULL));
  g_assert_cmpstr (have, ==, want);
}

/* The tokenizer files beside tokenizer.json say what it says; the writer
 * refuses a missing or non-BPE tokenizer.json and impossible shapes. */
static void
test_tokenizer_files (void)
{
  g_autofree char *dir = wide_release ();
  assert_text (dir, "tokenizer/merges.txt", "#version: 0.2\na b\n");
  assert_text (dir, "text_encoder-mlx-4bit/merges.txt", "#version: 0.2\na b\n");
  assert_text (dir, "tokenizer/vocab.json", "{\"a\":0,\"b\":1,\"ab\":2}");
  assert_text (dir, "tokenizer/tokenizer.json", small_tokenizer);
  g_autofree char *added = keys_of (dir, "tokenizer/added_tokens.json");
  g_assert_cmpstr (added, ==, "<|endoftext|> <|im_end|>");
  g_autofree char *special = keys_of (dir, "tokenizer/special_tokens_map.json");
  g_assert_cmpstr (special, ==, "additional_special_tokens eos_token pad_token");
  g_autofree char *config = keys_of (dir, "tokenizer/tokenizer_config.json");
  g_autofree char *te_config = keys_of (dir, "text_encoder-mlx-4bit/tokenizer_config.json");
  g_assert_null (strstr (config, "chat_template"));
  g_assert_nonnull (strstr (te_config, "chat_template"));
  g_assert_nonnull (strstr (config, "added_tokens_decoder"));

  BnSynthSpec spec;
  bn_synth_spec_tiny (&spec, 2);
  g_autofree char *out = fixture_path ("not-written");
  g_autofree char *missing = fixture_path ("no-such-tokenizer.json");
  g_autofree char *not_bpe = fixture_path ("not-bpe.json");
  g_assert_true (g_file_set_contents (not_bpe, "{\"added_tokens\": [1]}", -1, NULL));
  const struct {
    const char *tok;
    int code;
  } bad[] = { { missing, BONSAI_ERROR_NOT_FOUND }, { not_bpe, BONSAI_ERROR_FORMAT } };
  for (size_t i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      GError *error = NULL;
      g_assert_false (bn_synthetic_release_write (out, &spec, BN_SYNTH_LAYOUT_MLX, bad[i].tok,
                                                  1, &error));
      g_assert_error (error, BONSAI_ERROR, bad[i].code);
      g_assert_nonnull (strstr (error->message, bad[i].tok));
      g_clear_error (&error);
    }
  /* A text encoder that cannot feed the transformer is not written. */
  spec.dit.context_dim = 64;
  GError *error = NULL;
  g_assert_false (bn_synthetic_release_write (out, &spec, BN_SYNTH_LAYOUT_MLX, missing, 1, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_clear_error (&error);
}

/* A text encoder whose features do not fit the transformer is refused at
 * open, naming the folder, not at the first prompt. */
static void
test_wrong_text_encoder (void)
{
  g_autofree char *unp = fixture_release ("unpacked", BN_SYNTH_LAYOUT_UNPACKED, NULL);
  if (!unp)
    return;
  g_autofree char *wide = wide_release ();
  g_autofree char *te = g_build_filename (unp, "text_encoder", NULL);
  g_autofree char *te_away = g_strconcat (te, ".away", NULL);
  g_autofree char *wide_te = g_build_filename (wide, "text_encoder-mlx-4bit", NULL);
  g_assert_cmpint (g_rename (te, te_away), ==, 0);
  g_assert_cmpint (symlink (wide_te, te), ==, 0);
  assert_refused (unp, BONSAI_ERROR_FORMAT, "text_encoder", "384");
  g_assert_cmpint (g_unlink (te), ==, 0);
  g_assert_cmpint (g_rename (te_away, te), ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  fixture_init ("layouts");
  g_test_add_func ("/layouts/files-and-keys", test_files_and_keys);
  g_test_add_data_func ("/layouts/mlx/generate", GINT_TO_POINTER (BN_SYNTH_LAYOUT_MLX),
                        test_generate);
  g_test_add_data_func ("/layouts/unpacked/generate",
                        GINT_TO_POINTER (BN_SYNTH_LAYOUT_UNPACKED), test_generate);
  g_test_add_func ("/layouts/same-image", test_same_image);
  g_test_add_func ("/layouts/missing-parts", test_missing_parts);
  g_test_add_func ("/layouts/tokenizer-files", test_tokenizer_files);
  g_test_add_func ("/layouts/wrong-text-encoder", test_wrong_text_encoder);
  int rc = g_test_run ();
  fixture_done ();
  return rc;
}
