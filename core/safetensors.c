/* safetensors.c — checked reading of memory-mapped safetensors files
 * (single, sharded, in memory) and atomic writing.  See safetensors.h. */
#include "safetensors.h"

#include "bonsai/bonsai.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* One file of a set (or a header or buffer given in memory). */
typedef struct {
  char *path;
  GMappedFile *map;     /* NULL when the bytes belong to the caller */
  const char *data;     /* the data section; NULL for a header parsed alone */
  size_t data_size;
  GHashTable *metadata; /* `__metadata__`: key → value, both owned */
} Shard;

typedef struct {
  BnStTensor pub; /* first, so a BnStTensor of this set is an Entry */
  Shard *shard;
  uint64_t begin, end; /* data_offsets */
} Entry;

struct BnSafetensors {
  char *path;
  GPtrArray *shards;     /* Shard *, owned, in file-name order */
  GArray *entries;       /* Entry, in name order once complete */
  GHashTable *by_name;   /* name → Entry * into entries */
  GStringChunk *names;   /* the tensor names */
};

static void
shard_free (gpointer p)
{
  Shard *s = p;
  g_free (s->path);
  if (s->map)
    g_mapped_file_unref (s->map);
  g_hash_table_unref (s->metadata);
  g_free (s);
}

static Shard *
shard_new (const char *path)
{
  Shard *s = g_new0 (Shard, 1);
  s->path = g_strdup (path);
  s->metadata = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  return s;
}

static BnSafetensors *
set_new (const char *path)
{
  BnSafetensors *st = g_new0 (BnSafetensors, 1);
  st->path = g_strdup (path);
  st->shards = g_ptr_array_new_with_free_func (shard_free);
  st->entries = g_array_new (FALSE, TRUE, sizeof (Entry));
  st->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  st->names = g_string_chunk_new (4096);
  return st;
}

void
bn_safetensors_free (BnSafetensors *st)
{
  if (!st)
    return;
  g_hash_table_unref (st->by_name);
  g_array_unref (st->entries);
  g_ptr_array_unref (st->shards);
  g_string_chunk_free (st->names);
  g_free (st->path);
  g_free (st);
}

/* ---- raw checks and JSON ------------------------------------------------ */

/* Checks what json-glib would trip over before it sees the bytes: invalid
 * UTF-8 (NUL included) and nesting deeper than BN_ST_MAX_DEPTH, since its
 * parser recurses and a hostile header could exhaust the stack.  Outside
 * strings only JSON's own characters are accepted, so this scan and the
 * parser agree on where strings are (json-glib also reads comments and
 * single-quoted strings, which could hide brackets from the scan). */
static gboolean
check_json_bytes (const char *origin, const char *what, const char *text,
                  size_t len, GError **error)
{
  const char *bad;
  if (!g_utf8_validate_len (text, len, &bad))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: the %s is not valid UTF-8 (byte %zu of the %s)",
                   origin, what, (size_t) (bad - text), what);
      return FALSE;
    }
  static const char structural[] = " \t\r\n:,.+-";
  int depth = 0;
  gboolean in_string = FALSE;
  for (size_t i = 0; i < len; i++)
    {
      unsigned char c = (unsigned char) text[i];
      if (in_string)
        {
          if (c == '\\')
            i++;
          else if (c == '"')
            in_string = FALSE;
          continue;
        }
      if (c == '"')
        in_string = TRUE;
      else if (c == '[' || c == '{')
        {
          if (++depth > BN_ST_MAX_DEPTH)
            {
              g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                           "%s: the %s nests deeper than %d levels (byte %zu)",
                           origin, what, BN_ST_MAX_DEPTH, i);
              return FALSE;
            }
        }
      else if (c == ']' || c == '}')
        {
          if (--depth < 0)
            {
              g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                           "%s: the %s is not valid JSON: unbalanced '%c' "
                           "at byte %zu", origin, what, c, i);
              return FALSE;
            }
        }
      else if (!g_ascii_isalnum (c) && !memchr (structural, c, sizeof structural - 1))
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                       "%s: the %s is not valid JSON: unexpected character "
                       "0x%02x at byte %zu", origin, what, c, i);
          return FALSE;
        }
    }
  return TRUE;
}

/* json-glib keeps the last of duplicate keys silently; counting members as
 * they are parsed finds them (an object's size stops growing). */
typedef struct {
  GHashTable *counts; /* JsonObject * → members seen */
  char *duplicate;
} DupCheck;

static void
on_object_member (JsonParser *parser, JsonObject *object, const char *name,
                  gpointer user_data)
{
  DupCheck *d = user_data;
  guint n = GPOINTER_TO_UINT (g_hash_table_lookup (d->counts, object)) + 1;
  g_hash_table_insert (d->counts, object, GUINT_TO_POINTER (n));
  if (json_object_get_size (object) != n && !d->duplicate)
    d->duplicate = g_strdup (name);
}

/* Parses checked JSON text; returns the root node (caller unrefs). */
static JsonNode *
parse_json (const char *origin, const char *what, const char *text, size_t len,
            GError **error)
{
  if (!check_json_bytes (origin, what, text, len, error))
    return NULL;
  JsonParser *parser = json_parser_new ();
  DupCheck dup = { g_hash_table_new (NULL, NULL), NULL };
  g_signal_connect (parser, "object-member", G_CALLBACK (on_object_member), &dup);
  GError *jerr = NULL;
  JsonNode *root = NULL;
  if (!json_parser_load_from_data (parser, text, (gssize) len, &jerr))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: the %s is not valid JSON: %s", origin, what, jerr->message);
      g_error_free (jerr);
    }
  else if (dup.duplicate)
    g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                 "%s: the %s has the key \"%s\" twice in one object", origin,
                 what, dup.duplicate);
  else if (!(root = json_parser_steal_root (parser)))
    g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                 "%s: the %s is empty", origin, what);
  g_free (dup.duplicate);
  g_hash_table_unref (dup.counts);
  g_object_unref (parser);
  return root;
}

/* open() + fstat + mmap, with errors naming the file. */
static GMappedFile *
map_file (const char *path, GError **error)
{
  /* O_NONBLOCK: a FIFO named as a model must not hang the open. */
  int fd = open (path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    {
      int e = errno;
      g_set_error (error, BONSAI_ERROR,
                   e == ENOENT ? BONSAI_ERROR_NOT_FOUND : BONSAI_ERROR_IO,
                   "cannot open %s: %s", path, g_strerror (e));
      return NULL;
    }
  struct stat sb;
  if (fstat (fd, &sb) != 0 || !S_ISREG (sb.st_mode))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "cannot read %s: not a regular file", path);
      close (fd);
      return NULL;
    }
  GError *merr = NULL;
  GMappedFile *map = g_mapped_file_new_from_fd (fd, FALSE, &merr);
  close (fd);
  if (!map)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "cannot map %s: %s",
                   path, merr->message);
      g_error_free (merr);
    }
  return map;
}

gboolean
bn_json_check (const char *origin, const char *text, gssize len,
               GError **error)
{
  return check_json_bytes (origin, "JSON", text,
                           len < 0 ? strlen (text) : (size_t) len, error);
}

JsonNode *
bn_json_load_file (const char *path, GError **error)
{
  GMappedFile *map = map_file (path, error);
  if (!map)
    return NULL;
  size_t len = g_mapped_file_get_length (map);
  JsonNode *root = NULL;
  if (len > BN_ST_MAX_HEADER)
    g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                 "%s: %zu bytes is more than the %u accepted for a JSON file",
                 path, len, BN_ST_MAX_HEADER);
  else
    root = parse_json (path, "JSON file", len ? g_mapped_file_get_contents (map) : "",
                       len, error);
  g_mapped_file_unref (map);
  return root;
}

/* ---- the header ---------------------------------------------------------- */

static char *
shape_string (int ndim, const int64_t *shape)
{
  GString *s = g_string_new ("[");
  for (int i = 0; i < ndim; i++)
    {
      if (shape[i] < 0)
        g_string_append_printf (s, "%s?", i ? ", " : "");
      else
        g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? ", " : "", shape[i]);
    }
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

/* A JSON integer ≥ 0. */
static gboolean
read_count (JsonNode *node, uint64_t *out)
{
  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_INT64)
    return FALSE;
  gint64 v = json_node_get_int (node);
  if (v < 0)
    return FALSE;
  *out = (uint64_t) v;
  return TRUE;
}

static gboolean
tensor_error (GError **error, const Shard *shard, const char *name,
              const char *fmt, ...) G_GNUC_PRINTF (4, 5);

static gboolean
tensor_error (GError **error, const Shard *shard, const char *name,
              const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *what = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT, "%s: tensor '%s': %s",
               shard->path, name, what);
  return FALSE;
}

/* Reads dtype, shape and data_offsets of one header entry into `e`. */
static gboolean
parse_tensor (const Shard *shard, const char *name, JsonNode *node, Entry *e,
              GError **error)
{
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return tensor_error (error, shard, name, "its header entry is not a JSON object");
  JsonObject *o = json_node_get_object (node);
  static const char *const keys[] = { "dtype", "shape", "data_offsets" };
  for (size_t i = 0; i < G_N_ELEMENTS (keys); i++)
    if (!json_object_has_member (o, keys[i]))
      return tensor_error (error, shard, name, "\"%s\" is missing", keys[i]);

  JsonNode *dt = json_object_get_member (o, "dtype");
  if (!JSON_NODE_HOLDS_VALUE (dt) || json_node_get_value_type (dt) != G_TYPE_STRING)
    return tensor_error (error, shard, name, "\"dtype\" is not a string");
  const char *dtype = json_node_get_string (dt);
  if (!bn_dtype_from_safetensors (dtype, &e->pub.dtype))
    return tensor_error (error, shard, name, "unknown dtype \"%s\"", dtype);

  JsonNode *sh = json_object_get_member (o, "shape");
  if (!JSON_NODE_HOLDS_ARRAY (sh))
    return tensor_error (error, shard, name, "\"shape\" is not a list");
  JsonArray *dims = json_node_get_array (sh);
  guint ndim = json_array_get_length (dims);
  if (ndim > BN_MAX_DIMS)
    return tensor_error (error, shard, name, "%u dimensions, more than the %d supported",
                         ndim, BN_MAX_DIMS);
  /* Bytes = size · Π extents, refusing overflow of 64 bits. */
  uint64_t bytes = bn_dtype_size (e->pub.dtype);
  gboolean overflow = FALSE;
  for (guint i = 0; i < ndim; i++)
    {
      uint64_t d;
      if (!read_count (json_array_get_element (dims, i), &d))
        return tensor_error (error, shard, name,
                             "shape entry %u is not a non-negative integer", i);
      e->pub.shape[i] = (int64_t) d;
      if (d && bytes > G_MAXUINT64 / d)
        overflow = TRUE;
      else
        bytes *= d;
    }
  e->pub.ndim = (int) ndim;

  JsonNode *of = json_object_get_member (o, "data_offsets");
  JsonArray *offs = JSON_NODE_HOLDS_ARRAY (of) ? json_node_get_array (of) : NULL;
  if (!offs || json_array_get_length (offs) != 2
      || !read_count (json_array_get_element (offs, 0), &e->begin)
      || !read_count (json_array_get_element (offs, 1), &e->end))
    return tensor_error (error, shard, name,
                         "\"data_offsets\" is not a list of two non-negative integers");
  if (e->begin > e->end)
    return tensor_error (error, shard, name,
                         "data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                         "] begin after they end", e->begin, e->end);
  if (e->end > shard->data_size)
    return tensor_error (error, shard, name,
                         "data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                         "] run past the end of the data section (%zu bytes; "
                         "truncated file?)", e->begin, e->end, shard->data_size);
  if (overflow || bytes != e->end - e->begin)
    {
      g_autofree char *s = shape_string (e->pub.ndim, e->pub.shape);
      g_autofree char *need = overflow ? g_strdup ("more than 2^64")
                              : g_strdup_printf ("%" G_GUINT64_FORMAT, bytes);
      return tensor_error (error, shard, name,
                           "%s %s needs %s bytes but data_offsets [%" G_GUINT64_FORMAT
                           ", %" G_GUINT64_FORMAT "] hold %" G_GUINT64_FORMAT,
                           dtype, s, need,
                           e->begin, e->end, e->end - e->begin);
    }
  e->pub.nbytes = (size_t) bytes;
  e->pub.data = shard->data ? shard->data + e->begin : NULL;
  return TRUE;
}

static gboolean
parse_metadata (Shard *shard, JsonNode *node, GError **error)
{
  if (!JSON_NODE_HOLDS_OBJECT (node))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: \"__metadata__\" is not a JSON object", shard->path);
      return FALSE;
    }
  JsonObjectIter it;
  const char *key;
  JsonNode *value;
  json_object_iter_init (&it, json_node_get_object (node));
  while (json_object_iter_next (&it, &key, &value))
    {
      if (!JSON_NODE_HOLDS_VALUE (value) || json_node_get_value_type (value) != G_TYPE_STRING)
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                       "%s: \"__metadata__\" entry \"%s\" is not a string",
                       shard->path, key);
          return FALSE;
        }
      g_hash_table_insert (shard->metadata, g_strdup (key),
                           g_strdup (json_node_get_string (value)));
    }
  return TRUE;
}

static int
compare_by_offset (gconstpointer a, gconstpointer b)
{
  const Entry *x = *(Entry *const *) a, *y = *(Entry *const *) b;
  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

/* Entries[first..] all belong to one shard: no two may share a byte. */
static gboolean
check_overlaps (const Shard *shard, GArray *entries, guint first, GError **error)
{
  guint n = entries->len - first;
  g_autofree Entry **sorted = g_new (Entry *, n ? n : 1);
  for (guint i = 0; i < n; i++)
    sorted[i] = &g_array_index (entries, Entry, first + i);
  qsort (sorted, n, sizeof *sorted, compare_by_offset);
  for (guint i = 1; i < n; i++)
    if (sorted[i]->begin < sorted[i - 1]->end)
      {
        g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                     "%s: tensors '%s' [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                     ") and '%s' [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                     ") overlap in the data section", shard->path,
                     sorted[i - 1]->pub.name, sorted[i - 1]->begin,
                     sorted[i - 1]->end, sorted[i]->pub.name, sorted[i]->begin,
                     sorted[i]->end);
        return FALSE;
      }
  return TRUE;
}

/* Parses the header of `shard` (its data and data_size already set) and
 * appends its tensors to st->entries. */
static gboolean
parse_shard_header (BnSafetensors *st, Shard *shard, const char *header,
                    size_t len, GError **error)
{
  if (len > BN_ST_MAX_HEADER)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: the header is %zu bytes, more than the %u accepted",
                   shard->path, len, BN_ST_MAX_HEADER);
      return FALSE;
    }
  JsonNode *root = parse_json (shard->path, "header", header, len, error);
  if (!root)
    return FALSE;
  gboolean ok = TRUE;
  guint first = st->entries->len;
  if (!JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: the header is not a JSON object", shard->path);
      ok = FALSE;
    }
  else
    {
      JsonObjectIter it;
      const char *name;
      JsonNode *node;
      json_object_iter_init (&it, json_node_get_object (root));
      while (ok && json_object_iter_next (&it, &name, &node))
        {
          if (!strcmp (name, "__metadata__"))
            {
              ok = parse_metadata (shard, node, error);
              continue;
            }
          Entry e = { .shard = shard };
          e.pub.name = g_string_chunk_insert (st->names, name);
          e.pub.file = shard->path;
          ok = parse_tensor (shard, name, node, &e, error);
          if (ok)
            g_array_append_val (st->entries, e);
        }
    }
  json_node_unref (root);
  return ok && check_overlaps (shard, st->entries, first, error);
}

/* A whole file in memory: 8-byte length, header, data. */
static gboolean
parse_shard_bytes (BnSafetensors *st, Shard *shard, const char *bytes,
                   size_t len, GError **error)
{
  if (len < 8)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: %zu bytes is too short for a safetensors file (it "
                   "starts with an 8-byte header length)", shard->path, len);
      return FALSE;
    }
  uint64_t hlen;
  memcpy (&hlen, bytes, 8);
  hlen = GUINT64_FROM_LE (hlen);
  if (hlen > BN_ST_MAX_HEADER)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: the header length field says %" G_GUINT64_FORMAT
                   " bytes, more than the %u accepted (not a safetensors file?)",
                   shard->path, hlen, BN_ST_MAX_HEADER);
      return FALSE;
    }
  if (hlen > len - 8)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: the header length field says %" G_GUINT64_FORMAT
                   " bytes but only %zu follow it (truncated file?)",
                   shard->path, hlen, len - 8);
      return FALSE;
    }
  shard->data = bytes + 8 + hlen;
  shard->data_size = len - 8 - (size_t) hlen;
  return parse_shard_header (st, shard, bytes + 8, (size_t) hlen, error);
}

static int
compare_by_name (gconstpointer a, gconstpointer b)
{
  return strcmp (((const Entry *) a)->pub.name, ((const Entry *) b)->pub.name);
}

/* Sorts the entries and indexes them; a name in two shards is an error. */
static gboolean
finish_set (BnSafetensors *st, GError **error)
{
  g_array_sort (st->entries, compare_by_name);
  for (guint i = 0; i < st->entries->len; i++)
    {
      Entry *e = &g_array_index (st->entries, Entry, i);
      if (i > 0 && !strcmp (e[-1].pub.name, e->pub.name))
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                       "%s: tensor '%s' is in both %s and %s", st->path,
                       e->pub.name, e[-1].pub.file, e->pub.file);
          return FALSE;
        }
      g_hash_table_insert (st->by_name, (gpointer) e->pub.name, e);
    }
  return TRUE;
}

/* ---- opening --------------------------------------------------------------- */

static Shard *
open_shard (BnSafetensors *st, const char *path, GError **error)
{
  GMappedFile *map = map_file (path, error);
  if (!map)
    return NULL;
  Shard *shard = shard_new (path);
  shard->map = map;
  g_ptr_array_add (st->shards, shard);
  size_t len = g_mapped_file_get_length (map);
  if (!parse_shard_bytes (st, shard, len ? g_mapped_file_get_contents (map) : "",
                          len, error))
    return NULL;
  return shard;
}

static int
compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* A shard name from an index must stay inside the index's folder. */
static gboolean
shard_name_ok (const char *file)
{
  if (!*file || g_path_is_absolute (file))
    return FALSE;
  g_auto (GStrv) parts = g_strsplit (file, "/", -1);
  for (char **p = parts; *p; p++)
    if (!strcmp (*p, ".."))
      return FALSE;
  return TRUE;
}

/* The index's "weight_map": tensor → shard file, each inside its folder. */
static JsonObject *
weight_map (const char *index_path, JsonNode *root, GError **error)
{
  JsonObject *top = JSON_NODE_HOLDS_OBJECT (root) ? json_node_get_object (root) : NULL;
  JsonNode *wm = top ? json_object_get_member (top, "weight_map") : NULL;
  if (!wm || !JSON_NODE_HOLDS_OBJECT (wm) || !json_object_get_size (json_node_get_object (wm)))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: no \"weight_map\" object listing tensors and their shards",
                   index_path);
      return NULL;
    }
  JsonObjectIter it;
  const char *name;
  JsonNode *node;
  json_object_iter_init (&it, json_node_get_object (wm));
  while (json_object_iter_next (&it, &name, &node))
    if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_STRING
        || !shard_name_ok (json_node_get_string (node)))
      {
        g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                     "%s: the shard of tensor '%s' is not a file name inside "
                     "the index's folder", index_path, name);
        return NULL;
      }
  return json_node_get_object (wm);
}

static gboolean
open_index_shards (BnSafetensors *st, const char *index_path, JsonNode *root,
                   GError **error)
{
  JsonObject *map = weight_map (index_path, root, error);
  if (!map)
    return FALSE;
  /* shard file → Shard *, once opened */
  g_autoptr (GHashTable) by_file = g_hash_table_new (g_str_hash, g_str_equal);
  JsonObjectIter it;
  const char *name;
  JsonNode *node;
  json_object_iter_init (&it, map);
  while (json_object_iter_next (&it, &name, &node))
    g_hash_table_insert (by_file, (gpointer) json_node_get_string (node), NULL);
  /* Opened in file-name order, so the first shard (metadata) is stable. */
  guint n;
  g_autofree char **files = (char **) g_hash_table_get_keys_as_array (by_file, &n);
  qsort (files, n, sizeof *files, compare_strings);
  g_autofree char *dir = g_path_get_dirname (index_path);
  for (guint i = 0; i < n; i++)
    {
      g_autofree char *path = g_build_filename (dir, files[i], NULL);
      Shard *shard = open_shard (st, path, error);
      if (!shard)
        {
          g_prefix_error (error, "%s: ", index_path);
          return FALSE;
        }
      g_hash_table_insert (by_file, files[i], shard);
    }
  if (!finish_set (st, error))
    return FALSE;
  json_object_iter_init (&it, map);
  while (json_object_iter_next (&it, &name, &node))
    {
      const char *file = json_node_get_string (node);
      const Entry *e = g_hash_table_lookup (st->by_name, name);
      if (!e || e->shard != g_hash_table_lookup (by_file, file))
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                       "%s: tensor '%s' is listed in shard %s but is not in it",
                       index_path, name, file);
          return FALSE;
        }
    }
  return TRUE;
}

static gboolean
open_index (BnSafetensors *st, const char *index_path, GError **error)
{
  JsonNode *root = bn_json_load_file (index_path, error);
  if (!root)
    return FALSE;
  gboolean ok = open_index_shards (st, index_path, root, error);
  json_node_unref (root);
  return ok;
}

/* The model file in a folder, as diffusers and transformers name it. */
static char *
pick_in_folder (const char *dir, GError **error)
{
  static const char *const bases[] = { "model", "diffusion_pytorch_model" };
  char *found[G_N_ELEMENTS (bases)] = { NULL };
  int n = 0;
  for (size_t i = 0; i < G_N_ELEMENTS (bases); i++)
    {
      g_autofree char *base = g_strconcat (bases[i], ".safetensors", NULL);
      g_autofree char *single = g_build_filename (dir, base, NULL);
      g_autofree char *index = g_strconcat (single, ".index.json", NULL);
      if (g_file_test (single, G_FILE_TEST_IS_REGULAR))
        found[i] = g_steal_pointer (&single);
      else if (g_file_test (index, G_FILE_TEST_IS_REGULAR))
        found[i] = g_steal_pointer (&index);
      n += found[i] != NULL;
    }
  if (n == 1)
    return found[0] ? found[0] : found[1];
  if (n == 0)
    g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                 "%s: no model.safetensors, diffusion_pytorch_model.safetensors "
                 "or their .index.json in this folder", dir);
  else
    g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                 "%s: holds both %s and %s; name the file to open", dir,
                 found[0], found[1]);
  g_free (found[0]);
  g_free (found[1]);
  return NULL;
}

BnSafetensors *
bn_safetensors_open (const char *path, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  g_autofree char *file = g_file_test (path, G_FILE_TEST_IS_DIR)
                          ? pick_in_folder (path, error) : g_strdup (path);
  if (!file)
    return NULL;
  BnSafetensors *st = set_new (file);
  gboolean ok = g_str_has_suffix (file, ".index.json")
                ? open_index (st, file, error)
                : open_shard (st, file, error) && finish_set (st, error);
  if (!ok)
    {
      bn_safetensors_free (st);
      return NULL;
    }
  return st;
}

BnSafetensors *
bn_safetensors_open_bytes (const char *origin, const void *bytes, size_t len,
                           GError **error)
{
  g_return_val_if_fail (origin != NULL && (bytes != NULL || len == 0), NULL);
  BnSafetensors *st = set_new (origin);
  Shard *shard = shard_new (origin);
  g_ptr_array_add (st->shards, shard);
  if (!parse_shard_bytes (st, shard, len ? bytes : "", len, error)
      || !finish_set (st, error))
    {
      bn_safetensors_free (st);
      return NULL;
    }
  return st;
}

BnSafetensors *
bn_safetensors_parse_header (const char *origin, const char *header,
                             size_t len, size_t data_size, GError **error)
{
  g_return_val_if_fail (origin != NULL && (header != NULL || len == 0), NULL);
  BnSafetensors *st = set_new (origin);
  Shard *shard = shard_new (origin);
  shard->data_size = data_size;
  g_ptr_array_add (st->shards, shard);
  if (!parse_shard_header (st, shard, len ? header : "", len, error)
      || !finish_set (st, error))
    {
      bn_safetensors_free (st);
      return NULL;
    }
  return st;
}

/* ---- queries ------------------------------------------------------------- */

const char *
bn_safetensors_path (const BnSafetensors *st)
{
  return st->path;
}

guint
bn_safetensors_n_tensors (const BnSafetensors *st)
{
  return st->entries->len;
}

const BnStTensor *
bn_safetensors_nth (const BnSafetensors *st, guint index)
{
  g_return_val_if_fail (index < st->entries->len, NULL);
  return &g_array_index (st->entries, Entry, index).pub;
}

const BnStTensor *
bn_safetensors_find (const BnSafetensors *st, const char *name)
{
  const Entry *e = g_hash_table_lookup (st->by_name, name);
  return e ? &e->pub : NULL;
}

const char *
bn_safetensors_metadata (const BnSafetensors *st, const char *key)
{
  if (!st->shards->len)
    return NULL;
  const Shard *first = g_ptr_array_index (st->shards, 0);
  return g_hash_table_lookup (first->metadata, key);
}

static char *
dtype_list (guint mask)
{
  GString *s = g_string_new (NULL);
  int count = 0;
  for (int i = 0; i < BN_DTYPE_COUNT; i++)
    count += (mask >> i) & 1u;
  for (int i = 0, k = 0; i < BN_DTYPE_COUNT; i++)
    if (mask & (1u << i))
      {
        k++;
        g_string_append_printf (s, "%s%s", k == 1 ? "" : k == count ? " or " : ", ",
                                bn_dtype_name ((BnDType) i));
      }
  return g_string_free (s, FALSE);
}

gboolean
bn_safetensors_view (const BnSafetensors *st, const char *name,
                     guint dtype_mask, int ndim, const int64_t *shape,
                     BnTensor *out, GError **error)
{
  const BnStTensor *t = bn_safetensors_find (st, name);
  if (!t)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                   "%s: no tensor '%s'", st->path, name);
      return FALSE;
    }
  if (dtype_mask && !(dtype_mask & (1u << t->dtype)))
    {
      g_autofree char *want = dtype_list (dtype_mask);
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: tensor '%s' has dtype %s, expected %s", t->file, name,
                   bn_dtype_name (t->dtype), want);
      return FALSE;
    }
  gboolean shape_ok = ndim < 0 || ndim == t->ndim;
  for (int i = 0; shape_ok && shape && ndim >= 0 && i < t->ndim; i++)
    shape_ok = shape[i] < 0 || shape[i] == t->shape[i];
  if (!shape_ok)
    {
      g_autofree char *got = shape_string (t->ndim, t->shape);
      g_autofree char *want = shape ? shape_string (ndim, shape) : NULL;
      if (want)
        g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                     "%s: tensor '%s' has shape %s, expected %s", t->file,
                     name, got, want);
      else
        g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                     "%s: tensor '%s' has shape %s, expected rank %d", t->file,
                     name, got, ndim);
      return FALSE;
    }
  size_t esz = bn_dtype_size (t->dtype);
  if (t->data && ((uintptr_t) t->data % esz) != 0)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: tensor '%s' is not aligned to its %zu-byte elements in "
                   "the file (a header not padded as safetensors pads it)",
                   t->file, name, esz);
      return FALSE;
    }
  memset (out, 0, sizeof *out);
  out->dtype = t->dtype;
  out->ndim = t->ndim;
  memcpy (out->shape, t->shape, sizeof out->shape);
  /* Views of a read-only mapping: the engine never writes through them. */
  out->data = (void *) t->data;
  return TRUE;
}

static void
drop_mapped (const void *data, size_t nbytes)
{
  uintptr_t page = (uintptr_t) sysconf (_SC_PAGESIZE);
  uintptr_t begin = ((uintptr_t) data + page - 1) / page * page;
  uintptr_t end = ((uintptr_t) data + nbytes) / page * page;
  if (end > begin)
    madvise ((void *) begin, end - begin, MADV_DONTNEED);
}

void
bn_safetensors_drop_pages (const BnSafetensors *st, const BnStTensor *t)
{
  const Entry *e = (const Entry *) t;
  g_return_if_fail (g_hash_table_lookup (st->by_name, t->name) == e);
  /* Only file-backed pages come back by themselves after MADV_DONTNEED. */
  if (e->shard->map && t->nbytes)
    drop_mapped (t->data, t->nbytes);
}

void
bn_safetensors_drop_range (const BnSafetensors *st, const void *data,
                           size_t nbytes)
{
  const char *p = data;
  for (guint i = 0; i < st->shards->len; i++)
    {
      const Shard *s = st->shards->pdata[i];
      /* Only ranges wholly inside a file mapping may be dropped: anything
       * else (caller memory, a copy) would lose its contents. */
      if (s->map && s->data && p >= s->data && nbytes <= s->data_size
          && (size_t) (p - s->data) <= s->data_size - nbytes)
        {
          drop_mapped (data, nbytes);
          return;
        }
    }
}

/* ---- writing --------------------------------------------------------------- */

typedef struct {
  char *name;
  BnDType dtype;
  int ndim;
  int64_t shape[BN_MAX_DIMS];
  const void *data;
  size_t nbytes;
} WEntry;

struct BnStWriter {
  GArray *entries;      /* WEntry */
  GHashTable *names;    /* set of entry names */
  GHashTable *metadata; /* key → value, owned */
};

static void
wentry_clear (gpointer p)
{
  g_free (((WEntry *) p)->name);
}

BnStWriter *
bn_st_writer_new (void)
{
  BnStWriter *w = g_new0 (BnStWriter, 1);
  w->entries = g_array_new (FALSE, TRUE, sizeof (WEntry));
  g_array_set_clear_func (w->entries, wentry_clear);
  w->names = g_hash_table_new (g_str_hash, g_str_equal);
  w->metadata = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  return w;
}

void
bn_st_writer_free (BnStWriter *w)
{
  if (!w)
    return;
  g_hash_table_unref (w->names);
  g_array_unref (w->entries);
  g_hash_table_unref (w->metadata);
  g_free (w);
}

void
bn_st_writer_set_metadata (BnStWriter *w, const char *key, const char *value)
{
  g_return_if_fail (g_utf8_validate (key, -1, NULL) && g_utf8_validate (value, -1, NULL));
  g_hash_table_insert (w->metadata, g_strdup (key), g_strdup (value));
}

gboolean
bn_st_writer_add (BnStWriter *w, const char *name, BnDType dtype, int ndim,
                  const int64_t *shape, const void *data, GError **error)
{
  const char *problem = NULL;
  uint64_t bytes = bn_dtype_size (dtype);
  if (!name || !g_utf8_validate (name, -1, NULL) || !strcmp (name, "__metadata__"))
    problem = "the name is not valid UTF-8 or is reserved";
  else if (g_hash_table_contains (w->names, name))
    problem = "a tensor of that name was already added";
  else if (!bn_dtype_to_safetensors (dtype))
    problem = "the dtype has no safetensors spelling";
  else if (ndim < 0 || ndim > BN_MAX_DIMS)
    problem = "the rank is out of range";
  for (int i = 0; !problem && i < ndim; i++)
    {
      if (shape[i] < 0 || (shape[i] && bytes > (G_MAXSIZE / 2) / (uint64_t) shape[i]))
        problem = "the shape has a negative or too large extent";
      else
        bytes *= (uint64_t) shape[i];
    }
  if (!problem && bytes && !data)
    problem = "no data";
  if (problem)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "cannot add tensor '%s' to a safetensors file: %s",
                   name ? name : "(null)", problem);
      return FALSE;
    }
  WEntry e = { g_strdup (name), dtype, ndim, { 0 }, data, (size_t) bytes };
  if (ndim) /* a scalar may come with no shape at all */
    memcpy (e.shape, shape, (size_t) ndim * sizeof *shape);
  g_array_append_val (w->entries, e);
  g_hash_table_add (w->names, g_array_index (w->entries, WEntry, w->entries->len - 1).name);
  return TRUE;
}

gboolean
bn_st_writer_add_packed (BnStWriter *w, const char *prefix, const BnTensor *t,
                         GError **error)
{
  if (!bn_dtype_is_packed (t->dtype) || t->ndim != 2 || !t->scales || !t->biases
      || t->group_size <= 0)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "cannot add '%s' as a packed tensor: it is a %s tensor of "
                   "rank %d without scales and biases", prefix,
                   bn_dtype_name (t->dtype), t->ndim);
      return FALSE;
    }
  int64_t n = t->shape[0], k = t->shape[1];
  int64_t words[2] = { n, k * bn_dtype_bits (t->dtype) / 32 };
  int64_t groups[2] = { n, k / t->group_size };
  g_autofree char *wn = g_strconcat (prefix, ".weight", NULL);
  g_autofree char *sn = g_strconcat (prefix, ".scales", NULL);
  g_autofree char *bname = g_strconcat (prefix, ".biases", NULL);
  return bn_st_writer_add (w, wn, BN_DTYPE_U32, 2, words, t->data, error)
         && bn_st_writer_add (w, sn, t->scale_dtype, 2, groups, t->scales, error)
         && bn_st_writer_add (w, bname, t->scale_dtype, 2, groups, t->biases, error);
}

/* Largest element first, then by name: every tensor starts at a multiple of
 * its element size when the data section is 8-aligned. */
static int
compare_for_layout (gconstpointer a, gconstpointer b)
{
  const WEntry *x = *(WEntry *const *) a, *y = *(WEntry *const *) b;
  size_t sx = bn_dtype_size (x->dtype), sy = bn_dtype_size (y->dtype);
  if (sx != sy)
    return sx > sy ? -1 : 1;
  return strcmp (x->name, y->name);
}

/* The 8-byte length and the header, padded with spaces to a multiple of 8. */
static GString *
build_header (BnStWriter *w, WEntry **order)
{
  JsonBuilder *b = json_builder_new ();
  json_builder_begin_object (b);
  if (g_hash_table_size (w->metadata))
    {
      guint n;
      g_autofree char **keys = (char **) g_hash_table_get_keys_as_array (w->metadata, &n);
      qsort (keys, n, sizeof *keys, compare_strings);
      json_builder_set_member_name (b, "__metadata__");
      json_builder_begin_object (b);
      for (guint i = 0; i < n; i++)
        {
          json_builder_set_member_name (b, keys[i]);
          json_builder_add_string_value (b, g_hash_table_lookup (w->metadata, keys[i]));
        }
      json_builder_end_object (b);
    }
  uint64_t offset = 0;
  for (guint i = 0; i < w->entries->len; i++)
    {
      const WEntry *e = order[i];
      json_builder_set_member_name (b, e->name);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "dtype");
      json_builder_add_string_value (b, bn_dtype_to_safetensors (e->dtype));
      json_builder_set_member_name (b, "shape");
      json_builder_begin_array (b);
      for (int d = 0; d < e->ndim; d++)
        json_builder_add_int_value (b, e->shape[d]);
      json_builder_end_array (b);
      json_builder_set_member_name (b, "data_offsets");
      json_builder_begin_array (b);
      json_builder_add_int_value (b, (gint64) offset);
      json_builder_add_int_value (b, (gint64) (offset + e->nbytes));
      json_builder_end_array (b);
      json_builder_end_object (b);
      offset += e->nbytes;
    }
  json_builder_end_object (b);
  JsonGenerator *gen = json_generator_new ();
  JsonNode *root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  gsize len;
  g_autofree char *json = json_generator_to_data (gen, &len);
  json_node_unref (root);
  g_object_unref (gen);
  g_object_unref (b);

  GString *out = g_string_sized_new (len + 16);
  uint64_t padded = (len + 7) / 8 * 8;
  uint64_t le = GUINT64_TO_LE (padded);
  g_string_append_len (out, (const char *) &le, 8);
  g_string_append_len (out, json, (gssize) len);
  while (out->len < 8 + padded)
    g_string_append_c (out, ' ');
  return out;
}

static gboolean
write_all (int fd, const void *buf, size_t n)
{
  const char *p = buf;
  while (n > 0)
    {
      ssize_t k = write (fd, p, MIN (n, (size_t) 1 << 30));
      if (k < 0 && errno == EINTR)
        continue;
      if (k <= 0)
        {
          if (k == 0)
            errno = EIO;
          return FALSE;
        }
      p += k;
      n -= (size_t) k;
    }
  return TRUE;
}

gboolean
bn_st_writer_write (BnStWriter *w, const char *path, GError **error)
{
  g_autofree WEntry **order = g_new (WEntry *, w->entries->len + 1);
  for (guint i = 0; i < w->entries->len; i++)
    order[i] = &g_array_index (w->entries, WEntry, i);
  qsort (order, w->entries->len, sizeof *order, compare_for_layout);
  g_autoptr (GString) header = build_header (w, order);

  g_autofree char *tmp = g_strconcat (path, ".tmp-XXXXXX", NULL);
  int fd = g_mkstemp_full (tmp, O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0)
    {
      int e = errno;
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO,
                   "cannot write %s: cannot create a temporary file beside it: %s",
                   path, g_strerror (e));
      return FALSE;
    }
  gboolean ok = write_all (fd, header->str, header->len);
  for (guint i = 0; ok && i < w->entries->len; i++)
    ok = write_all (fd, order[i]->data, order[i]->nbytes);
  /* fsync before rename: after a crash the name holds old or new, whole. */
  ok = ok && fsync (fd) == 0;
  int e = errno;
  if (close (fd) != 0 && ok)
    {
      ok = FALSE;
      e = errno;
    }
  if (ok && rename (tmp, path) != 0)
    {
      ok = FALSE;
      e = errno;
    }
  if (!ok)
    {
      unlink (tmp);
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "cannot write %s: %s",
                   path, g_strerror (e));
    }
  return ok;
}
