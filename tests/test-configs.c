/* test-configs.c — hostile config JSON (as a model folder's config.json or a
 * header's metadata can carry) is refused with a clear error by every
 * config parser, before json-glib's recursive parser could exhaust the
 * stack. */
#include "flux2_dit.h"
#include "flux2_vae.h"
#include "qwen3.h"
#include "safetensors.h"

#include "bonsai/bonsai.h"

static char *
deep_json (int depth)
{
  GString *s = g_string_new ("{\"a\": ");
  for (int i = 0; i < depth; i++)
    g_string_append_c (s, '[');
  for (int i = 0; i < depth; i++)
    g_string_append_c (s, ']');
  g_string_append_c (s, '}');
  return g_string_free (s, FALSE);
}

/* Takes the error by address: it must be read after the call has set it. */
static void
expect_format (gboolean ok, GError **error, const char *origin)
{
  g_assert_false (ok);
  g_assert_error (*error, BONSAI_ERROR, BONSAI_ERROR_FORMAT);
  g_assert_nonnull (strstr ((*error)->message, origin));
}

static void
test_deep (void)
{
  g_autofree char *deep = deep_json (200000);
  GError *error = NULL;
  BnFlux2Config dc;
  expect_format (bn_flux2_config_parse (deep, -1, "dit/config.json", &dc, &error), &error,
                 "dit/config.json");
  g_clear_error (&error);
  BnVaeConfig vc;
  expect_format (bn_vae_config_parse (deep, "vae/config.json", &vc, &error), &error,
                 "vae/config.json");
  g_clear_error (&error);
  BnQwen3Config qc;
  expect_format (bn_qwen3_config_parse (deep, -1, "te/config.json", &qc, &error), &error,
                 "te/config.json");
  g_clear_error (&error);
  expect_format (bn_json_check ("reply", deep, -1, &error), &error, "reply");
  g_clear_error (&error);
}

static void
test_bad_utf8 (void)
{
  const char bad[] = "{\"num_layers\": 1, \"x\": \"\xff\xfe\"}";
  GError *error = NULL;
  BnFlux2Config dc;
  expect_format (bn_flux2_config_parse (bad, -1, "dit/config.json", &dc, &error), &error,
                 "dit/config.json");
  g_assert_nonnull (strstr (error->message, "UTF-8"));
  g_clear_error (&error);
  /* Shallow, valid JSON passes the byte checks. */
  g_assert_true (bn_json_check ("ok", "{\"a\": [[1], {\"b\": 2}]}", -1, &error));
  g_assert_no_error (error);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/configs/deep-nesting", test_deep);
  g_test_add_func ("/configs/bad-utf8", test_bad_utf8);
  return g_test_run ();
}
