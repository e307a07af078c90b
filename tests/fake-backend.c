/* fake-backend.c — a stand-in libbonsai-cuda for test-backend-loader: what
 * its init does is chosen by FAKE_BACKEND ("ok": opens a device named
 * "fake device"; anything else: fails as a module without a GPU does). */
#include "backend.h"

#include <gmodule.h>

static const char *
fake_device_name (BnBackendImpl *impl)
{
  return "fake device";
}

static void
fake_close (BnBackendImpl *impl)
{
}

static const BnBackendOps fake_ops = {
  .abi = BN_BACKEND_ABI,
  .name = "fake",
  .close = fake_close,
  .device_name = fake_device_name,
};

G_MODULE_EXPORT gboolean
bn_backend_module_init (int abi, GQuark domain, int code_backend,
                        int code_oom, const BnBackendOps **ops,
                        BnBackendImpl **impl, GError **error)
{
  if (g_strcmp0 (g_getenv ("FAKE_BACKEND"), "ok") != 0 || abi != BN_BACKEND_ABI)
    {
      g_set_error (error, domain, code_backend, "no CUDA device (fake)");
      return FALSE;
    }
  *ops = &fake_ops;
  *impl = NULL;
  return TRUE;
}
