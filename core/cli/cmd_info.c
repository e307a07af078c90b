/* cmd_info.c — `bonsai-image info FILE|DIR`: lists the tensors of a
 * safetensors file, sharded set or model folder, marks the low-bit linears
 * (MLX packs: a `.scales` sibling) with their bits, group size and bits per
 * weight, and sums up counts and bytes.  A folder of model sub-folders (a
 * release: transformer, text encoder, VAE) is summarised part by part. */
#include "cli.h"

#include "safetensors.h"

#include "bonsai/bonsai.h"

#include <stdio.h>
#include <string.h>

/* Bits and group size a folder's config declares (bits 0: none). */
typedef struct {
  const char *file;  /* the config's file name, for the report */
  JsonNode *root;    /* owns `quant` */
  JsonObject *quant; /* holds bits, group_size and MLX per-layer entries */
  int bits, group;
  gboolean ternary;
} QuantConfig;

static void
quant_config_clear (QuantConfig *qc)
{
  if (qc->root)
    json_node_unref (qc->root);
  memset (qc, 0, sizeof *qc);
}

/* bits and group_size of a JSON object; FALSE when either is absent. */
static gboolean
read_bits_group (JsonObject *o, int *bits, int *group)
{
  JsonNode *b = json_object_get_member (o, "bits");
  JsonNode *g = json_object_get_member (o, "group_size");
  if (!b || !g || !JSON_NODE_HOLDS_VALUE (b) || !JSON_NODE_HOLDS_VALUE (g)
      || json_node_get_value_type (b) != G_TYPE_INT64
      || json_node_get_value_type (g) != G_TYPE_INT64)
    return FALSE;
  gint64 vb = json_node_get_int (b), vg = json_node_get_int (g);
  if (vb < 1 || vb > 8 || vg < 1 || vg > 4096)
    return FALSE;
  *bits = (int) vb;
  *group = (int) vg;
  return TRUE;
}

/* Reads quantization_config.json (the DiT pack: bits, group_size, solver),
 * else config.json's "quantization" entry (MLX), in `dir`. */
static gboolean
load_quant_config (const char *dir, QuantConfig *qc, GError **error)
{
  memset (qc, 0, sizeof *qc);
  static const char *const files[] = { "quantization_config.json", "config.json" };
  for (size_t i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autofree char *path = g_build_filename (dir, files[i], NULL);
      if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
        continue;
      JsonNode *root = bn_json_load_file (path, error);
      if (!root)
        return FALSE;
      JsonObject *top = JSON_NODE_HOLDS_OBJECT (root) ? json_node_get_object (root) : NULL;
      JsonObject *quant = NULL;
      if (top && i == 0)
        quant = top;
      else if (top)
        for (const char *const *key = (const char *const[]) { "quantization", "quantization_config", NULL };
             *key && !quant; key++)
          {
            JsonNode *q = json_object_get_member (top, *key);
            quant = q && JSON_NODE_HOLDS_OBJECT (q) ? json_node_get_object (q) : NULL;
          }
      if (!quant)
        {
          json_node_unref (root);
          continue;
        }
      qc->file = files[i];
      qc->root = root;
      qc->quant = quant;
      if (!read_bits_group (quant, &qc->bits, &qc->group))
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                       "%s: no integer \"bits\" (1..8) and \"group_size\" in its "
                       "quantization settings", path);
          quant_config_clear (qc);
          return FALSE;
        }
      JsonNode *solver = json_object_get_member (quant, "solver");
      qc->ternary = solver && JSON_NODE_HOLDS_VALUE (solver)
                    && json_node_get_value_type (solver) == G_TYPE_STRING
                    && !strcmp (json_node_get_string (solver), "ternary");
      return TRUE;
    }
  return TRUE;
}

/* What is known of one packed layer. */
typedef struct {
  int bits, group;       /* 0 when unknown */
  int64_t product;       /* bits·group = 32·words / groups per row */
  int64_t n, k;          /* k 0 when unknown */
  size_t bytes;          /* codes + scales + biases */
  gboolean ternary;
  char *problem;         /* set when the pack is malformed */
} Packed;

/* Takes `text`; several problems are joined with "; ". */
static void
add_problem (Packed *p, char *text)
{
  char *joined = p->problem ? g_strconcat (p->problem, "; ", text, NULL) : NULL;
  if (joined)
    {
      g_free (text);
      text = joined;
    }
  g_free (p->problem);
  p->problem = text;
}

static const int cand_bits[] = { 1, 2, 4, 8 };
static const int cand_groups[] = { 32, 64, 128 };

static void
describe_packed (const BnSafetensors *st, const char *prefix,
                 const QuantConfig *qc, Packed *p)
{
  g_autofree char *wn = g_strconcat (prefix, ".weight", NULL);
  g_autofree char *sn = g_strconcat (prefix, ".scales", NULL);
  g_autofree char *bname = g_strconcat (prefix, ".biases", NULL);
  const BnStTensor *w = bn_safetensors_find (st, wn);
  const BnStTensor *s = bn_safetensors_find (st, sn);
  const BnStTensor *b = bn_safetensors_find (st, bname);
  memset (p, 0, sizeof *p);
  p->bytes = w->nbytes + s->nbytes + (b ? b->nbytes : 0);
  if (w->dtype != BN_DTYPE_U32 || w->ndim != 2 || s->ndim != 2
      || s->shape[0] != w->shape[0] || s->shape[1] <= 0
      || w->shape[1] > G_MAXINT64 / 32 || (w->shape[1] * 32) % s->shape[1] != 0)
    {
      add_problem (p, g_strdup ("codes must be U32 [N, W] and scales [N, G] "
                                "with G dividing 32·W"));
      return;
    }
  if (!b)
    add_problem (p, g_strdup ("no .biases tensor"));
  p->n = w->shape[0];
  p->product = w->shape[1] * 32 / s->shape[1];
  int bits = qc->bits, group = qc->group;
  /* MLX configs may override bits and group per layer. */
  JsonNode *own = qc->quant ? json_object_get_member (qc->quant, prefix) : NULL;
  if (own && JSON_NODE_HOLDS_OBJECT (own))
    read_bits_group (json_node_get_object (own), &bits, &group);
  if (bits && (int64_t) bits * group != p->product)
    {
      add_problem (p, g_strdup_printf ("does not match %s (%d-bit, group %d)",
                                       qc->file, bits, group));
      bits = 0;
    }
  gboolean from_config = bits != 0;
  if (!bits)
    {
      int found = 0;
      for (size_t i = 0; i < G_N_ELEMENTS (cand_bits); i++)
        for (size_t j = 0; j < G_N_ELEMENTS (cand_groups); j++)
          if ((int64_t) cand_bits[i] * cand_groups[j] == p->product && !found++)
            {
              bits = cand_bits[i];
              group = cand_groups[j];
            }
      if (found != 1)
        bits = group = 0;
    }
  if (bits)
    {
      p->bits = bits;
      p->group = group;
      p->k = w->shape[1] * 32 / bits;
      p->ternary = qc->ternary && bits == 2 && from_config;
    }
}

static void
packed_free (gpointer p)
{
  g_free (((Packed *) p)->problem);
  g_free (p);
}

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* "2-bit g128 ternary" or "bits*group = 256 (2-bit g128, …)"; caller frees. */
static char *
packed_kind (const Packed *p)
{
  if (!p->product)
    return g_strdup ("malformed pack");
  if (p->bits)
    return g_strdup_printf ("%d-bit g%d%s", p->bits, p->group, p->ternary ? " ternary" : "");
  GString *s = g_string_new (NULL);
  g_string_printf (s, "bits*group = %" G_GINT64_FORMAT, p->product);
  int shown = 0;
  for (size_t i = 0; i < G_N_ELEMENTS (cand_bits); i++)
    for (size_t j = 0; j < G_N_ELEMENTS (cand_groups); j++)
      if ((int64_t) cand_bits[i] * cand_groups[j] == p->product)
        g_string_append_printf (s, "%s%d-bit g%d", shown++ ? ", " : " (", cand_bits[i],
                                cand_groups[j]);
  if (shown)
    g_string_append_c (s, ')');
  return g_string_free (s, FALSE);
}

static char *
shape_text (const BnStTensor *t)
{
  GString *s = g_string_new ("[");
  for (int i = 0; i < t->ndim; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? ", " : "", t->shape[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

static char *
bytes_text (uint64_t bytes)
{
  if (bytes < 1000)
    return g_strdup_printf ("%" G_GUINT64_FORMAT " bytes", bytes);
  g_autofree char *human = g_format_size (bytes);
  return g_strdup_printf ("%" G_GUINT64_FORMAT " bytes, %s", bytes, human);
}

typedef struct {
  uint64_t bytes;
  guint tensors;
} Totals;

/* Lists (when `list`) and summarises one opened set. */
static void
report_set (const BnSafetensors *st, const QuantConfig *qc, gboolean list,
            Totals *all)
{
  guint n = bn_safetensors_n_tensors (st);
  /* prefix → Packed, for every `P.scales` with a `P.weight` */
  g_autoptr (GHashTable) packs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, packed_free);
  int width = 4;
  for (guint i = 0; i < n; i++)
    {
      const BnStTensor *t = bn_safetensors_nth (st, i);
      width = MAX (width, (int) MIN (strlen (t->name), 80));
      if (!g_str_has_suffix (t->name, ".scales"))
        continue;
      char *prefix = g_strndup (t->name, strlen (t->name) - strlen (".scales"));
      g_autofree char *wn = g_strconcat (prefix, ".weight", NULL);
      if (!bn_safetensors_find (st, wn))
        {
          g_free (prefix);
          continue;
        }
      Packed *p = g_new (Packed, 1);
      describe_packed (st, prefix, qc, p);
      g_hash_table_insert (packs, prefix, p);
    }

  if (qc->file && g_hash_table_size (packs))
    printf ("quantization: %d-bit, group %d%s (%s)\n", qc->bits, qc->group,
            qc->ternary ? ", ternary" : "", qc->file);
  uint64_t total = 0, low_bytes = 0;
  guint low_tensors = 0;
  if (list)
    printf ("%-*s  %-5s  %-16s  %12s\n", width, "name", "dtype", "shape", "bytes");
  for (guint i = 0; i < n; i++)
    {
      const BnStTensor *t = bn_safetensors_nth (st, i);
      total += t->nbytes;
      const char *dot = strrchr (t->name, '.');
      g_autofree char *prefix = dot ? g_strndup (t->name, (gsize) (dot - t->name)) : NULL;
      const Packed *p = prefix ? g_hash_table_lookup (packs, prefix) : NULL;
      gboolean member = p && (!strcmp (dot, ".weight") || !strcmp (dot, ".scales")
                              || !strcmp (dot, ".biases"));
      if (member)
        {
          low_tensors++;
          low_bytes += t->nbytes;
        }
      if (!list)
        continue;
      g_autofree char *shape = shape_text (t);
      printf ("%-*s  %-5s  %-16s  %12zu", width, t->name,
              bn_dtype_to_safetensors (t->dtype), shape, t->nbytes);
      if (member && !strcmp (dot, ".weight"))
        {
          g_autofree char *kind = packed_kind (p);
          printf ("  low-bit %s", kind);
          if (p->k)
            printf (" [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "] %.3f bits/weight",
                    p->n, p->k, 8.0 * (double) p->bytes / ((double) p->n * (double) p->k));
          if (p->problem)
            printf (" (%s)", p->problem);
        }
      else if (member)
        printf ("  (%s of low-bit %s)", dot + 1, prefix);
      printf ("\n");
    }

  /* One summary line per kind of pack, e.g. "100 x 2-bit g128 ternary". */
  g_autoptr (GHashTable) kinds = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  GHashTableIter it;
  gpointer key, value;
  uint64_t weights = 0;
  gboolean all_known = TRUE;
  g_hash_table_iter_init (&it, packs);
  while (g_hash_table_iter_next (&it, &key, &value))
    {
      const Packed *p = value;
      char *kind = packed_kind (p);
      guint c = GPOINTER_TO_UINT (g_hash_table_lookup (kinds, kind));
      g_hash_table_replace (kinds, kind, GUINT_TO_POINTER (c + 1));
      weights += (uint64_t) p->n * (uint64_t) p->k;
      all_known &= p->k != 0;
      if (p->problem)
        fprintf (stderr, "bonsai-image: %s: low-bit %s: %s\n",
                 bn_safetensors_path (st), (const char *) key, p->problem);
    }
  g_autofree char *tb = bytes_text (total);
  printf ("tensors: %u (%s)\n", n, tb);
  if (g_hash_table_size (packs))
    {
      g_autofree char *lb = bytes_text (low_bytes);
      printf ("low-bit linears: %u (%u tensors, %s):", g_hash_table_size (packs),
              low_tensors, lb);
      guint n_kinds;
      g_autofree char **names = (char **) g_hash_table_get_keys_as_array (kinds, &n_kinds);
      qsort (names, n_kinds, sizeof *names, compare_names);
      for (char **k = names; *k; k++)
        printf ("%s %u x %s", k == names ? "" : ",",
                GPOINTER_TO_UINT (g_hash_table_lookup (kinds, *k)), *k);
      if (all_known && weights)
        printf ("; %.3f bits/weight", 8.0 * (double) low_bytes / (double) weights);
      printf ("\n");
    }
  g_autofree char *db = bytes_text (total - low_bytes);
  printf ("dense tensors: %u (%s)\n", n - low_tensors, db);
  all->bytes += total;
  all->tensors += n;
}

/* Opens `path` and reports it; FALSE (error printed) when it cannot. */
static gboolean
report_path (const char *path, gboolean list, Totals *all)
{
  GError *error = NULL;
  BnSafetensors *st = bn_safetensors_open (path, &error);
  if (!st)
    {
      bn_cli_fail (error);
      return FALSE;
    }
  printf ("== %s\n", bn_safetensors_path (st));
  g_autofree char *dir = g_path_get_dirname (bn_safetensors_path (st));
  QuantConfig qc;
  gboolean ok = load_quant_config (dir, &qc, &error);
  if (!ok)
    bn_cli_fail (error);
  report_set (st, &qc, list, all);
  quant_config_clear (&qc);
  bn_safetensors_free (st);
  return ok;
}

static gboolean
has_model_file (const char *dir)
{
  static const char *const names[] = {
    "model.safetensors", "model.safetensors.index.json",
    "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json",
  };
  for (size_t i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autofree char *p = g_build_filename (dir, names[i], NULL);
      if (g_file_test (p, G_FILE_TEST_IS_REGULAR))
        return TRUE;
    }
  return FALSE;
}

/* A folder without a model of its own: every model sub-folder and every
 * .safetensors file in it, in name order. */
static int
report_parts (const char *dir, gboolean list)
{
  GError *error = NULL;
  GDir *d = g_dir_open (dir, 0, &error);
  if (!d)
    return bn_cli_fail (error);
  g_autoptr (GPtrArray) parts = g_ptr_array_new_with_free_func (g_free);
  const char *name;
  while ((name = g_dir_read_name (d)))
    {
      char *p = g_build_filename (dir, name, NULL);
      if ((g_file_test (p, G_FILE_TEST_IS_DIR) && has_model_file (p))
          || (g_str_has_suffix (name, ".safetensors") && g_file_test (p, G_FILE_TEST_IS_REGULAR)))
        g_ptr_array_add (parts, p);
      else
        g_free (p);
    }
  g_dir_close (d);
  if (!parts->len)
    {
      g_set_error (&error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                   "%s: no safetensors model here or in its sub-folders", dir);
      return bn_cli_fail (error);
    }
  g_ptr_array_sort (parts, compare_names);
  Totals all = { 0, 0 };
  int failed = 0;
  for (guint i = 0; i < parts->len; i++)
    {
      if (i)
        printf ("\n");
      failed += !report_path (g_ptr_array_index (parts, i), list, &all);
    }
  g_autofree char *tb = bytes_text (all.bytes);
  printf ("\nall %u parts: %u tensors (%s)%s\n", parts->len, all.tensors, tb,
          failed ? "; some parts could not be read" : "");
  return failed ? 1 : 0;
}

int
bn_cmd_info (int argc, char **argv)
{
  const char *path = NULL;
  int list = -1; /* -1: list tensors of one model, summarise a folder of parts */
  gboolean usage_error = FALSE, help = FALSE;
  for (int i = 1; i < argc; i++)
    {
      if (!strcmp (argv[i], "--help") || !strcmp (argv[i], "-h"))
        help = TRUE;
      else if (!strcmp (argv[i], "--summary") || !strcmp (argv[i], "-s"))
        list = 0;
      else if (!strcmp (argv[i], "--tensors") || !strcmp (argv[i], "-t"))
        list = 1;
      else if (argv[i][0] == '-' || path)
        usage_error = TRUE;
      else
        path = argv[i];
    }
  if (help || usage_error || !path)
    {
      fprintf (help ? stdout : stderr,
               "Usage: bonsai-image info [--summary|--tensors] FILE|DIR\n"
               "Lists the tensors of a safetensors file, a sharded set "
               "(*.index.json) or a model folder:\n"
               "name, dtype, shape and bytes; low-bit (MLX packed) linears with "
               "bits, group size and bits per\n"
               "weight (from quantization_config.json or config.json beside the "
               "file, else from the shapes).\n"
               "A folder of model sub-folders is summarised part by part.\n"
               "  -s, --summary   only the summary lines\n"
               "  -t, --tensors   list the tensors of every part too\n");
      return help && !usage_error ? 0 : 2;
    }
  if (g_file_test (path, G_FILE_TEST_IS_DIR) && !has_model_file (path))
    return report_parts (path, list == 1);
  Totals all = { 0, 0 };
  return report_path (path, list != 0, &all) ? 0 : 1;
}
