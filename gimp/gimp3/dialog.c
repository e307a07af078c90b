/* dialog.c — the GIMP 3.0 dialog: a GimpProcedureDialog over the
 * procedure's config (GIMP remembers the last values), with a multi-line
 * prompt, size presets beside free width and height, a seed with a dice
 * button, and a model chooser. */
#include "gimp3.h"

#include "download.h"

#include <libgimp/gimpui.h>

#include <stdio.h>

/* The preset nick for a size: "1024x1024", or "custom". */
static char *
preset_nick (int width, int height)
{
  int n;
  const BnGimpPreset *presets = bn_gimp_presets (&n);
  for (int i = 0; i < n; i++)
    if (presets[i].width == width && presets[i].height == height)
      return g_strdup_printf ("%dx%d", width, height);
  return g_strdup ("custom");
}

void
bn_gimp3_add_dialog_arguments (GimpProcedure *procedure)
{
  int n;
  const BnGimpPreset *presets = bn_gimp_presets (&n);
  GimpChoice *choice = gimp_choice_new ();
  for (int i = 0; i < n; i++)
    {
      g_autofree char *nick = g_strdup_printf ("%dx%d", presets[i].width, presets[i].height);
      g_autofree char *label = g_strdup_printf ("%s (%d × %d)", _(presets[i].label),
                                                presets[i].width, presets[i].height);
      gimp_choice_add (choice, nick, i, label, NULL);
    }
  gimp_choice_add (choice, "custom", n, _("Custom"), NULL);
  g_autofree char *initial = preset_nick (BN_GIMP_DEFAULT_SIZE, BN_GIMP_DEFAULT_SIZE);
  gimp_procedure_add_choice_aux_argument (procedure, "size-preset", _("_Size"),
                                          _("A size the model works well at"), choice, initial,
                                          G_PARAM_READWRITE);
}

/* ---- size presets follow the size and back ------------------------------------- */

typedef struct {
  GimpProcedureConfig *config;
  gboolean syncing;
} Sizes;

static void
preset_changed (GObject *config, GParamSpec *pspec, Sizes *s)
{
  g_autofree char *nick = NULL;
  int width, height;
  g_object_get (config, "size-preset", &nick, NULL);
  if (s->syncing || !nick || sscanf (nick, "%dx%d", &width, &height) != 2)
    return;
  s->syncing = TRUE;
  g_object_set (config, "width", width, "height", height, NULL);
  s->syncing = FALSE;
}

static void
size_changed (GObject *config, GParamSpec *pspec, Sizes *s)
{
  int width, height;
  if (s->syncing)
    return;
  g_object_get (config, "width", &width, "height", &height, NULL);
  g_autofree char *nick = preset_nick (width, height);
  s->syncing = TRUE;
  g_object_set (config, "size-preset", nick, NULL);
  s->syncing = FALSE;
}

/* Width and height step by 16, the model's size multiple. */
static void
step_by_16 (GimpProcedureDialog *dialog, const char *property)
{
  GtkWidget *w = gimp_procedure_dialog_get_widget (dialog, property, GIMP_TYPE_LABEL_SPIN);
  if (GIMP_IS_LABEL_SPIN (w))
    gimp_label_spin_set_increments (GIMP_LABEL_SPIN (w), 16, 64);
}

/* ---- seed and model ------------------------------------------------------------ */

static void
roll_seed (GtkButton *button, GimpProcedureConfig *config)
{
  g_object_set (config, "seed", g_random_int_range (0, G_MAXINT), NULL);
}

static void
seed_box (GimpProcedureDialog *dialog, GimpProcedureConfig *config)
{
  GtkWidget *box = gimp_procedure_dialog_fill_box (dialog, "seed-box", "seed", NULL);
  gtk_orientable_set_orientation (GTK_ORIENTABLE (box), GTK_ORIENTATION_HORIZONTAL);
  /* U+2684 DIE FACE-5: present in the usual UI fonts, unlike an emoji. */
  GtkWidget *dice = gtk_button_new_with_label ("⚄");
  gtk_widget_set_tooltip_text (dice, _("Roll a random seed"));
  gtk_widget_set_valign (dice, GTK_ALIGN_CENTER);
  g_signal_connect (dice, "clicked", G_CALLBACK (roll_seed), config);
  gtk_box_pack_start (GTK_BOX (box), dice, FALSE, FALSE, 0);
  gtk_widget_show (dice);
}

static void
browse_model (GtkButton *button, GtkEntry *entry)
{
  GtkWidget *chooser = gtk_file_chooser_dialog_new (
      _("Choose a model folder"), GTK_WINDOW (gtk_widget_get_toplevel (GTK_WIDGET (button))),
      GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER, _("_Cancel"), GTK_RESPONSE_CANCEL, _("_Open"),
      GTK_RESPONSE_ACCEPT, NULL);
  if (gtk_dialog_run (GTK_DIALOG (chooser)) == GTK_RESPONSE_ACCEPT)
    {
      g_autofree char *dir = gtk_file_chooser_get_filename (GTK_FILE_CHOOSER (chooser));
      gtk_entry_set_text (entry, dir);
    }
  gtk_widget_destroy (chooser);
}

/* The model's widgets and its download. */
typedef struct {
  GtkWidget *entry;
  GtkWidget *fetch;
  GtkWidget *bar;
  GtkWidget *status;
  BnGimpDownload *download;
} Model;

static void
download_progress (double fraction, const char *text, gpointer data)
{
  Model *m = data;
  gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (m->bar), CLAMP (fraction, 0.0, 1.0));
  gtk_progress_bar_set_text (GTK_PROGRESS_BAR (m->bar), text);
}

static void
download_done (const char *dir, const GError *error, gpointer data)
{
  Model *m = data;
  gtk_widget_hide (m->bar);
  gtk_button_set_label (GTK_BUTTON (m->fetch), _("_Download"));
  g_autofree char *text = error ? g_strdup (error->message)
                                : g_strdup_printf (_("Installed in %s"), dir);
  gtk_label_set_text (GTK_LABEL (m->status), text);
  gtk_widget_show (m->status);
}

/* Starts fetching the model named in the entry, or stops the download. */
static void
fetch_model (GtkButton *button, Model *m)
{
  if (m->download && !bn_gimp_download_finished (m->download))
    {
      bn_gimp_download_cancel (m->download);
      return;
    }
  g_autofree char *name = g_strstrip (g_strdup (gtk_entry_get_text (GTK_ENTRY (m->entry))));
  if (!*name)
    return;
  bn_gimp_download_free (m->download);
  gtk_widget_hide (m->status);
  gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (m->bar), 0.0);
  gtk_progress_bar_set_text (GTK_PROGRESS_BAR (m->bar), _("Looking for the model"));
  gtk_widget_show (m->bar);
  gtk_button_set_label (GTK_BUTTON (m->fetch), _("_Stop"));
  m->download = bn_gimp_download_start (name, download_progress, download_done, m);
}

/* The model: a combo of what is installed whose entry edits the config's
 * "model", a button to pick a folder, one to download the model named,
 * and below them the download's progress and outcome. */
static void
model_box (GimpProcedureDialog *dialog, GimpProcedureConfig *config, Model *m)
{
  gimp_procedure_dialog_get_label (dialog, "model-label", _("_Model"), FALSE, TRUE);
  GtkWidget *box = gimp_procedure_dialog_fill_box (dialog, "model-box", "model-label", NULL);
  gtk_orientable_set_orientation (GTK_ORIENTABLE (box), GTK_ORIENTATION_HORIZONTAL);
  gtk_box_set_spacing (GTK_BOX (box), 6);
  g_autofree char *current = NULL;
  g_object_get (config, "model", &current, NULL);
  GtkWidget *combo = gtk_combo_box_text_new_with_entry ();
  g_autoptr (GPtrArray) choices = bn_gimp_model_choices (current);
  for (guint i = 0; i < choices->len; i++)
    gtk_combo_box_text_append_text (GTK_COMBO_BOX_TEXT (combo), choices->pdata[i]);
  m->entry = gtk_bin_get_child (GTK_BIN (combo));
  g_object_bind_property (config, "model", m->entry, "text",
                          G_BINDING_BIDIRECTIONAL | G_BINDING_SYNC_CREATE);
  gtk_widget_set_tooltip_text (combo, _("An installed model by name, or a model folder"));
  GtkWidget *browse = gtk_button_new_with_mnemonic (_("_Browse…"));
  g_signal_connect (browse, "clicked", G_CALLBACK (browse_model), m->entry);
  m->fetch = gtk_button_new_with_mnemonic (_("_Download"));
  gtk_widget_set_tooltip_text (m->fetch, _("Fetch the model named here; an interrupted "
                                           "download goes on where it stopped"));
  g_signal_connect (m->fetch, "clicked", G_CALLBACK (fetch_model), m);
  gtk_box_pack_start (GTK_BOX (box), combo, TRUE, TRUE, 0);
  gtk_box_pack_start (GTK_BOX (box), browse, FALSE, FALSE, 0);
  gtk_box_pack_start (GTK_BOX (box), m->fetch, FALSE, FALSE, 0);
  gtk_widget_show (combo);
  gtk_widget_show (browse);
  gtk_widget_show (m->fetch);
  GList *children = gtk_container_get_children (GTK_CONTAINER (box));
  if (children && GTK_IS_LABEL (children->data))
    gtk_label_set_mnemonic_widget (GTK_LABEL (children->data), m->entry);
  g_list_free (children);

  m->status = gimp_procedure_dialog_get_label (dialog, "download-status", "", FALSE, FALSE);
  gtk_label_set_line_wrap (GTK_LABEL (m->status), TRUE);
  GtkWidget *below = gimp_procedure_dialog_fill_box (dialog, "download-box", "download-status",
                                                     NULL);
  m->bar = gtk_progress_bar_new ();
  gtk_progress_bar_set_show_text (GTK_PROGRESS_BAR (m->bar), TRUE);
  gtk_box_pack_start (GTK_BOX (below), m->bar, FALSE, FALSE, 0);
  /* Shown when a download starts or ends. */
  gtk_widget_set_no_show_all (m->bar, TRUE);
  gtk_widget_set_no_show_all (m->status, TRUE);
  gtk_widget_hide (m->status);
}

/* The prompt: a question above a box a few lines high, wrapping words. */
static void
prompt_view (GimpProcedureDialog *dialog, gboolean edit)
{
  GtkWidget *label = gimp_procedure_dialog_get_label (
      dialog, "prompt-label",
      edit ? _("_What should change?") : _("_What should the picture show?"), FALSE, TRUE);
  GtkWidget *view = gimp_procedure_dialog_get_widget (dialog, "prompt", GTK_TYPE_TEXT_VIEW);
  if (GTK_IS_LABEL (label))
    {
      gtk_label_set_xalign (GTK_LABEL (label), 0.0);
      gtk_label_set_mnemonic_widget (GTK_LABEL (label), view);
    }
  if (GTK_IS_TEXT_VIEW (view))
    {
      gtk_text_view_set_wrap_mode (GTK_TEXT_VIEW (view), GTK_WRAP_WORD_CHAR);
      gtk_widget_set_size_request (view, 420, 96);
    }
}

gboolean
bn_gimp3_dialog (GimpProcedure *procedure, GimpProcedureConfig *config,
                 const BnGimp3DialogOptions *opts)
{
  GtkWidget *widget = gimp_procedure_dialog_new (procedure, config,
                                                 opts->edit ? _("Bonsai Image Edit")
                                                            : _("Bonsai Image"));
  GimpProcedureDialog *dialog = GIMP_PROCEDURE_DIALOG (widget);
  gimp_procedure_dialog_set_ok_label (dialog, _("_Generate"));
  prompt_view (dialog, opts->edit);
  seed_box (dialog, config);
  Model model = { 0 };
  model_box (dialog, config, &model);
  Sizes sizes = { config, FALSE };
  if (opts->edit)
    {
      gimp_procedure_dialog_fill (dialog, "prompt-label", "prompt", "steps", "seed-box",
                                  "model-box", "download-box", "margin", "feather", NULL);
      gimp_procedure_dialog_set_sensitive (dialog, "margin", opts->has_selection, NULL, NULL,
                                           FALSE);
      gimp_procedure_dialog_set_sensitive (dialog, "feather", opts->has_selection, NULL, NULL,
                                           FALSE);
    }
  else
    {
      size_changed (G_OBJECT (config), NULL, &sizes);
      g_signal_connect (config, "notify::size-preset", G_CALLBACK (preset_changed), &sizes);
      g_signal_connect (config, "notify::width", G_CALLBACK (size_changed), &sizes);
      g_signal_connect (config, "notify::height", G_CALLBACK (size_changed), &sizes);
      step_by_16 (dialog, "width");
      step_by_16 (dialog, "height");
      GtkListStore *store = gimp_int_store_new (_("As a new image"), BN_GIMP_OUTPUT_NEW_IMAGE,
                                                _("As a new layer in this image"),
                                                BN_GIMP_OUTPUT_NEW_LAYER, NULL);
      gimp_procedure_dialog_get_int_radio (dialog, "output", GIMP_INT_STORE (store));
      g_object_unref (store);
      gimp_procedure_dialog_fill (dialog, "prompt-label", "prompt", "size-preset", "width",
                                  "height", "steps", "seed-box", "model-box", "download-box",
                                  "output", NULL);
      gimp_procedure_dialog_set_sensitive (dialog, "output", opts->has_image, NULL, NULL, FALSE);
    }
  gboolean ok = gimp_procedure_dialog_run (dialog);
  bn_gimp_download_free (model.download);
  g_signal_handlers_disconnect_by_data (config, &sizes);
  gtk_widget_destroy (widget);
  return ok;
}
