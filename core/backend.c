/* backend.c — choosing a backend and loading the CUDA module.
 *
 * The module is opened once per process: opening a CUDA context costs
 * hundreds of milliseconds and a few hundred MB of device memory, so every
 * model and host in the process shares it.  A failure is remembered too, so
 * AUTO logs "running on the CPU" once, not once per image. */
#include "backend.h"

#include <gmodule.h>
#include <string.h>

#define MODULE_NAME "bonsai-cuda"

static GMutex lock;
static gboolean tried;          /* the CUDA module was looked for       */
static BnBackend cuda;          /* valid when cuda.ops is set           */
static char *cuda_failure;      /* why it did not open, when it did not */
static int selected = -1;       /* BonsaiBackend, -1: not chosen yet    */

static char *
try_module (const char *dir, BnBackend *out, GError **error)
{
  /* Not g_module_build_path: GLib 2.76 deprecates it (GIMP 3.0's root
   * builds with -Werror against 2.84). */
  char *path = g_build_filename (dir, "lib" MODULE_NAME "." G_MODULE_SUFFIX, NULL);
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    {
      g_free (path);
      return NULL;
    }
  /* LOCAL: the module's symbols stay out of the global namespace. */
  GModule *mod = g_module_open (path, G_MODULE_BIND_LOCAL);
  if (!mod)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_BACKEND,
                   "cannot load %s: %s", path, g_module_error ());
      return path;
    }
  /* Never unloaded, even when it turns out unusable: the CUDA libraries it
   * pulls in cannot be torn down cleanly (their static C++ runtimes leave
   * their allocations behind), and a second look is never taken. */
  g_module_make_resident (mod);
  BnBackendInitFunc init = NULL;
  if (!g_module_symbol (mod, BN_BACKEND_INIT_SYMBOL, (gpointer *) &init)
      || !init)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_BACKEND,
                   "%s is not a Bonsai backend (no %s)", path,
                   BN_BACKEND_INIT_SYMBOL);
      return path;
    }
  GError *local = NULL;
  if (!init (BN_BACKEND_ABI, BONSAI_ERROR, BONSAI_ERROR_BACKEND,
             BONSAI_ERROR_OUT_OF_MEMORY, &out->ops, &out->impl, &local))
    {
      g_propagate_prefixed_error (error, local, "%s: ", path);
      return path;
    }
  return path;
}

/* Looks for the module in BONSAI_PLUGIN_PATH, the build tree, then the
 * installed folder; the first one found is the only one tried. */
static gboolean
open_cuda (BnBackend *out, GError **error)
{
  if (!g_module_supported ())
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_BACKEND,
                   "this system cannot load modules, so no CUDA backend");
      return FALSE;
    }
  GPtrArray *dirs = g_ptr_array_new_with_free_func (g_free);
  const char *env = g_getenv ("BONSAI_PLUGIN_PATH");
  if (env && *env)
    {
      char **parts = g_strsplit (env, G_SEARCHPATH_SEPARATOR_S, -1);
      for (char **p = parts; *p; p++)
        if (**p)
          g_ptr_array_add (dirs, g_strdup (*p));
      g_strfreev (parts);
    }
  g_ptr_array_add (dirs, g_strdup (BN_BUILD_PLUGINDIR));
  g_ptr_array_add (dirs, g_strdup (BN_INSTALL_PLUGINDIR));

  gboolean ok = FALSE;
  char *found = NULL;
  for (guint i = 0; i < dirs->len && !found; i++)
    {
      GError *local = NULL;
      found = try_module (dirs->pdata[i], out, &local);
      if (local)
        g_propagate_error (error, local);
      else
        ok = found != NULL;
    }
  if (!found)
    g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_BACKEND,
                 "no CUDA backend module (lib%s) in BONSAI_PLUGIN_PATH, %s "
                 "or %s", MODULE_NAME, BN_BUILD_PLUGINDIR,
                 BN_INSTALL_PLUGINDIR);
  g_free (found);
  g_ptr_array_unref (dirs);
  return ok;
}

gboolean
bn_backend_get (BonsaiBackend kind, BnBackend **out, GError **error)
{
  *out = NULL;
  if (kind == BONSAI_BACKEND_CPU)
    return TRUE;
  g_mutex_lock (&lock);
  if (!tried)
    {
      tried = TRUE;
      GError *local = NULL;
      if (!open_cuda (&cuda, &local))
        {
          cuda.ops = NULL;
          cuda_failure = g_strdup (local->message);
          g_error_free (local);
          if (kind == BONSAI_BACKEND_AUTO)
            g_message ("running on the CPU: %s", cuda_failure);
        }
      else
        g_info ("CUDA backend on %s", cuda.ops->device_name (cuda.impl));
    }
  gboolean ok = TRUE;
  if (cuda.ops)
    *out = &cuda;
  else if (kind == BONSAI_BACKEND_CUDA)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_BACKEND, "%s",
                   cuda_failure);
      ok = FALSE;
    }
  g_mutex_unlock (&lock);
  return ok;
}

gboolean
bonsai_backend_from_string (const char *name, BonsaiBackend *out)
{
  static const char *const names[] = { "auto", "cpu", "cuda" };
  for (int i = 0; name && i < (int) G_N_ELEMENTS (names); i++)
    if (g_ascii_strcasecmp (name, names[i]) == 0)
      {
        *out = (BonsaiBackend) i;
        return TRUE;
      }
  return FALSE;
}

BonsaiBackend
bn_backend_selected (void)
{
  g_mutex_lock (&lock);
  if (selected < 0)
    {
      BonsaiBackend b = BONSAI_BACKEND_AUTO;
      const char *env = g_getenv ("BONSAI_BACKEND");
      if (env && *env && !bonsai_backend_from_string (env, &b))
        g_warning ("BONSAI_BACKEND=%s is not auto, cpu or cuda; using auto",
                   env);
      selected = (int) b;
    }
  BonsaiBackend b = (BonsaiBackend) selected;
  g_mutex_unlock (&lock);
  return b;
}

gboolean
bonsai_backend_select (BonsaiBackend backend, GError **error)
{
  if (backend < BONSAI_BACKEND_AUTO || backend > BONSAI_BACKEND_CUDA)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "unknown backend %d", (int) backend);
      return FALSE;
    }
  BnBackend *b;
  if (backend == BONSAI_BACKEND_CUDA && !bn_backend_get (backend, &b, error))
    return FALSE;
  g_mutex_lock (&lock);
  selected = (int) backend;
  g_mutex_unlock (&lock);
  return TRUE;
}

char *
bonsai_backend_describe (GError **error)
{
  BnBackend *b;
  if (!bn_backend_get (bn_backend_selected (), &b, error))
    return NULL;
  if (!b)
    return g_strdup ("cpu");
  return g_strdup_printf ("cuda: %s", b->ops->device_name (b->impl));
}

gboolean
bn_backend_for_pipeline (BnBackend **out, GError **error)
{
  *out = NULL;
  if (bn_backend_selected () != BONSAI_BACKEND_CUDA)
    return TRUE;
  return bn_backend_get (BONSAI_BACKEND_CUDA, out, error);
}
