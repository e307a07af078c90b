/* models_installed.c — bonsai_models_installed: the store's list of what is
 * installed (store.h) as the public BonsaiModelInfo, for hosts that offer a
 * choice of models (the GIMP plug-ins' model chooser). */
#include "store.h"

static void
info_free (BonsaiModelInfo *info)
{
  g_free (info->name);
  g_free (info->dir);
  g_free (info);
}

GPtrArray *
bonsai_models_installed (GError **error)
{
  /* Without a manifest the folders in BONSAI_MODELS are still listed. */
  g_autoptr (BnManifest) manifest = bn_manifest_load_default (NULL);
  g_autoptr (GPtrArray) entries = bn_store_list (manifest, FALSE, NULL, error);
  if (!entries)
    return NULL;
  GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) info_free);
  for (guint i = 0; i < entries->len; i++)
    {
      const BnStoreEntry *e = entries->pdata[i];
      BonsaiModelInfo *info = g_new0 (BonsaiModelInfo, 1);
      info->name = g_strdup (e->name);
      info->dir = g_strdup (e->dir);
      info->size = e->size;
      info->complete = e->n_missing == 0;
      g_ptr_array_add (out, info);
    }
  return out;
}
