/* cache.c — the process-wide model table and prompt-feature LRU. */
#include "cache.h"

#include "pipeline.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
  char *prompt;
  const BonsaiModel *model;  /* identity only: entries go before the model */
  int max_length;
  BonsaiTensor *features;
} PromptEntry;

/* Statically allocated GMutex and GCond need no initialisation. */
static GMutex lock;
static GCond load_done;
/* key → BonsaiModel *, or → the key itself while a thread loads it. */
static GHashTable *models;
static GQueue prompts = G_QUEUE_INIT;  /* PromptEntry *, most recent first */
static guint prompt_capacity = BN_CACHE_PROMPT_CAPACITY;
static BonsaiCacheStats stats;

/* ---- keys -------------------------------------------------------------------- */

static gboolean
append_file (GString *key, const char *path, GError **error)
{
  char *real = realpath (path, NULL);
  struct stat sb;
  if (!real || stat (real, &sb) != 0)
    {
      int e = errno;
      g_set_error (error, BONSAI_ERROR,
                   e == ENOENT ? BONSAI_ERROR_NOT_FOUND : BONSAI_ERROR_IO,
                   "cannot read %s: %s", path, g_strerror (e));
      free (real);
      return FALSE;
    }
  g_string_append_printf (key, "%s\t%ju:%ju\t%jd\t%jd.%09ld\n", real,
                          (uintmax_t) sb.st_dev, (uintmax_t) sb.st_ino,
                          (intmax_t) sb.st_size, (intmax_t) sb.st_mtim.tv_sec,
                          (long) sb.st_mtim.tv_nsec);
  free (real);
  return TRUE;
}

static gint
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* Every regular file in `dir` (following links, as the loaders do), in
 * name order, so that the key does not depend on the directory's order. */
static gboolean
append_dir (GString *key, const char *dir, GError **error)
{
  GError *local = NULL;
  GDir *d = g_dir_open (dir, 0, &local);
  if (!d)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "%s", local->message);
      g_error_free (local);
      return FALSE;
    }
  g_autoptr (GPtrArray) files = g_ptr_array_new_with_free_func (g_free);
  const char *name;
  while ((name = g_dir_read_name (d)))
    {
      char *p = g_build_filename (dir, name, NULL);
      if (g_file_test (p, G_FILE_TEST_IS_REGULAR))
        g_ptr_array_add (files, p);
      else
        g_free (p);
    }
  g_dir_close (d);
  g_ptr_array_sort (files, compare_names);
  for (guint i = 0; i < files->len; i++)
    if (!append_file (key, files->pdata[i], error))
      return FALSE;
  return TRUE;
}

char *
bn_cache_model_key (const char *backend, const char *const *paths,
                    int n_paths, GError **error)
{
  GString *key = g_string_new (backend);
  g_string_append_c (key, '\n');
  for (int i = 0; i < n_paths; i++)
    {
      if (!paths[i])
        continue;
      gboolean ok = g_file_test (paths[i], G_FILE_TEST_IS_DIR)
                      ? append_dir (key, paths[i], error)
                      : append_file (key, paths[i], error);
      if (!ok)
        {
          g_string_free (key, TRUE);
          return NULL;
        }
    }
  return g_string_free (key, FALSE);
}

/* ---- models ------------------------------------------------------------------ */

BonsaiModel *
bn_cache_model_begin (const char *key)
{
  g_mutex_lock (&lock);
  if (!models)
    models = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  char *held;
  gpointer value;
  /* A loading entry maps the key to itself; wait until it is settled.  A
   * failed load leaves no entry, and this thread then loads. */
  while (g_hash_table_lookup_extended (models, key, (gpointer *) &held, &value)
         && value == held)
    g_cond_wait (&load_done, &lock);
  BonsaiModel *model = NULL;
  if (g_hash_table_contains (models, key))
    {
      model = value;
      /* Under the lock, so a concurrent last unref cannot free it now. */
      g_atomic_int_inc (&model->refs);
      stats.model_hits++;
    }
  else
    {
      char *k = g_strdup (key);
      g_hash_table_insert (models, k, k);
    }
  g_mutex_unlock (&lock);
  return model;
}

void
bn_cache_model_done (const char *key, BonsaiModel *model)
{
  g_mutex_lock (&lock);
  if (model)
    {
      model->cache_key = g_strdup (key);
      g_hash_table_insert (models, g_strdup (key), model);
      stats.model_opens++;
      stats.models++;
    }
  else
    g_hash_table_remove (models, key);
  g_cond_broadcast (&load_done);
  g_mutex_unlock (&lock);
}

static void
prompt_entry_free (PromptEntry *e)
{
  g_free (e->prompt);
  bonsai_tensor_free (e->features);
  g_free (e);
}

gboolean
bn_cache_model_release (BonsaiModel *model)
{
  g_mutex_lock (&lock);
  gboolean last = g_atomic_int_dec_and_test (&model->refs);
  if (last)
    {
      if (model->cache_key)
        {
          g_hash_table_remove (models, model->cache_key);
          stats.models--;
        }
      for (GList *l = prompts.head, *next; l; l = next)
        {
          next = l->next;
          PromptEntry *e = l->data;
          if (e->model == model)
            {
              prompt_entry_free (e);
              g_queue_delete_link (&prompts, l);
            }
        }
      stats.prompts = prompts.length;
    }
  g_mutex_unlock (&lock);
  return last;
}

/* ---- prompt features ---------------------------------------------------------- */

static BonsaiTensor *
tensor_copy (const BonsaiTensor *t)
{
  BonsaiTensor *c = bonsai_tensor_new (t->ndim, t->shape, NULL);
  if (c)
    {
      size_t n = 1;
      for (int i = 0; i < t->ndim; i++)
        n *= (size_t) t->shape[i];
      memcpy (c->data, t->data, n * sizeof (float));
    }
  return c;
}

/* Drops least recently used entries until at most `keep` remain.  Called
 * with the lock held. */
static void
trim_prompts (guint keep)
{
  while (prompts.length > keep)
    prompt_entry_free (g_queue_pop_tail (&prompts));
  stats.prompts = prompts.length;
}

/* The entry for (model, prompt, max_length), moved to the front, or NULL.
 * Called with the lock held. */
static PromptEntry *
find_prompt (const BonsaiModel *model, const char *prompt, int max_length)
{
  for (GList *l = prompts.head; l; l = l->next)
    {
      PromptEntry *e = l->data;
      if (e->model == model && e->max_length == max_length
          && !strcmp (e->prompt, prompt))
        {
          g_queue_unlink (&prompts, l);
          g_queue_push_head_link (&prompts, l);
          return e;
        }
    }
  return NULL;
}

BonsaiTensor *
bn_cache_prompt_lookup (const BonsaiModel *model, const char *prompt,
                        int max_length)
{
  g_mutex_lock (&lock);
  PromptEntry *e = find_prompt (model, prompt, max_length);
  BonsaiTensor *copy = e ? tensor_copy (e->features) : NULL;
  if (copy)
    stats.prompt_hits++;
  g_mutex_unlock (&lock);
  if (copy)
    g_info ("prompt features (%zu bytes of prompt) taken from the cache: "
            "the text encoder did not run", strlen (prompt));
  return copy;
}

void
bn_cache_prompt_encoded (const BonsaiModel *model, const char *prompt,
                         int max_length, const BonsaiTensor *features)
{
  g_mutex_lock (&lock);
  stats.prompt_encodes++;
  guint capacity = prompt_capacity;
  g_mutex_unlock (&lock);
  if (capacity == 0)
    return;
  /* Copied outside the lock: 15.7 MB for klein's features. */
  BonsaiTensor *copy = tensor_copy (features);
  if (!copy)
    return;
  g_mutex_lock (&lock);
  /* Another thread may have encoded the same prompt meanwhile. */
  PromptEntry *e = find_prompt (model, prompt, max_length);
  if (e)
    bonsai_tensor_free (copy);
  else
    {
      e = g_new0 (PromptEntry, 1);
      e->prompt = g_strdup (prompt);
      e->model = model;
      e->max_length = max_length;
      e->features = copy;
      g_queue_push_head (&prompts, e);
      trim_prompts (prompt_capacity);
    }
  g_mutex_unlock (&lock);
}

/* ---- public ------------------------------------------------------------------- */

void
bonsai_cache_stats (BonsaiCacheStats *out)
{
  g_return_if_fail (out != NULL);
  g_mutex_lock (&lock);
  *out = stats;
  g_mutex_unlock (&lock);
}

void
bonsai_cache_set_prompt_capacity (guint entries)
{
  g_mutex_lock (&lock);
  prompt_capacity = entries;
  trim_prompts (entries);
  g_mutex_unlock (&lock);
}
