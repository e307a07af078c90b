/* test-backend-loader.c — backend.c: finding the module through
 * BONSAI_PLUGIN_PATH, AUTO falling back to the CPU with one message, CUDA
 * failing with the module's reason, the public selection calls.  The module
 * is tests/fake-backend.c, built as libbonsai-cuda in this folder; its
 * outcome is chosen by FAKE_BACKEND.  The loader's state is per process,
 * so each case runs in a subprocess. */
#include "backend.h"

#include <string.h>

static void
device_present (void)
{
  if (!g_test_subprocess ())
    {
      g_setenv ("FAKE_BACKEND", "ok", TRUE);
      g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
      g_test_trap_assert_passed ();
      return;
    }
  GError *error = NULL;
  BnBackend *be = NULL;
  g_assert_true (bn_backend_get (BONSAI_BACKEND_CUDA, &be, &error));
  g_assert_no_error (error);
  g_assert_nonnull (be);
  g_assert_cmpstr (be->ops->name, ==, "fake");
  BnBackend *again = NULL;
  g_assert_true (bn_backend_get (BONSAI_BACKEND_AUTO, &again, &error));
  g_assert_true (again == be); /* opened once per process */
  g_assert_true (bn_backend_get (BONSAI_BACKEND_CPU, &again, &error));
  g_assert_null (again);
  g_assert_true (bonsai_backend_select (BONSAI_BACKEND_CUDA, &error));
  g_assert_no_error (error);
  g_assert_cmpint (bn_backend_selected (), ==, BONSAI_BACKEND_CUDA);
  char *d = bonsai_backend_describe (&error);
  g_assert_cmpstr (d, ==, "cuda: fake device");
  g_free (d);
  g_assert_true (bn_backend_for_pipeline (&again, &error));
  g_assert_true (again == be);
  g_assert_true (bonsai_backend_select (BONSAI_BACKEND_AUTO, &error));
  g_assert_true (bn_backend_for_pipeline (&again, &error));
  g_assert_null (again); /* AUTO stays on the CPU for now */
}

static void
no_device (void)
{
  if (!g_test_subprocess ())
    {
      g_setenv ("FAKE_BACKEND", "fail", TRUE);
      g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
      g_test_trap_assert_passed ();
      /* AUTO said why it runs on the CPU, once. */
      g_test_trap_assert_stderr ("*running on the CPU*no CUDA device (fake)*");
      g_test_trap_assert_stderr_unmatched ("*running on the CPU*running on the CPU*");
      return;
    }
  GError *error = NULL;
  BnBackend *be = (BnBackend *) &error;
  g_assert_true (bn_backend_get (BONSAI_BACKEND_AUTO, &be, &error));
  g_assert_null (be);
  g_assert_true (bn_backend_get (BONSAI_BACKEND_AUTO, &be, &error));
  g_assert_false (bn_backend_get (BONSAI_BACKEND_CUDA, &be, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_BACKEND);
  g_assert_nonnull (strstr (error->message, "no CUDA device (fake)"));
  g_assert_nonnull (strstr (error->message, "libbonsai-cuda"));
  g_clear_error (&error);
  /* A failed choice leaves the previous one. */
  g_assert_false (bonsai_backend_select (BONSAI_BACKEND_CUDA, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_BACKEND);
  g_clear_error (&error);
  g_assert_cmpint (bn_backend_selected (), ==, BONSAI_BACKEND_AUTO);
  char *d = bonsai_backend_describe (&error);
  g_assert_no_error (error);
  g_assert_cmpstr (d, ==, "cpu");
  g_free (d);
}

static void
names (void)
{
  BonsaiBackend b;
  g_assert_true (bonsai_backend_from_string ("CUDA", &b));
  g_assert_cmpint (b, ==, BONSAI_BACKEND_CUDA);
  g_assert_true (bonsai_backend_from_string ("cpu", &b));
  g_assert_cmpint (b, ==, BONSAI_BACKEND_CPU);
  g_assert_true (bonsai_backend_from_string ("auto", &b));
  g_assert_cmpint (b, ==, BONSAI_BACKEND_AUTO);
  g_assert_false (bonsai_backend_from_string ("gpu", &b));
  g_assert_false (bonsai_backend_from_string (NULL, &b));
  GError *error = NULL;
  g_assert_false (bonsai_backend_select ((BonsaiBackend) 7, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_clear_error (&error);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/backend-loader/device-present", device_present);
  g_test_add_func ("/backend-loader/no-device", no_device);
  g_test_add_func ("/backend-loader/names", names);
  return g_test_run ();
}
