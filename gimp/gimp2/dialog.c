/* dialog.c — the GIMP 2.10 dialog (GTK 2): a multi-line prompt, size
 * presets and free size, steps, a seed with a dice button, the model, and
 * where the result goes (generate) or the margin and feather (edit). */
#include "gimp2.h"

#include "download.h"

#include <libgimp/gimp.h>
#include <libgimp/gimpui.h>

typedef struct {
  const BnGimpPreset *presets;
  int n_presets;
  GtkWidget *prompt;   /* GtkTextView */
  GtkWidget *preset;   /* GtkComboBoxText: the presets, then "Custom" */
  GtkWidget *width, *height, *steps, *seed, *margin, *feather;
  GtkWidget *model;    /* GtkComboBoxText with an entry */
  GtkWidget *fetch;    /* the download button */
  GtkWidget *bar;      /* the download's progress */
  GtkWidget *status;   /* the download's outcome */
  BnGimpDownload *download;
  GtkWidget *new_layer;
  gboolean syncing;    /* a preset is setting the size */
} Dialog;

static GtkWidget *
spin (int value, int lo, int hi, int step)
{
  GtkObject *adj = gtk_adjustment_new (value, lo, hi, step, step * 10, 0);
  GtkWidget *w = gtk_spin_button_new (GTK_ADJUSTMENT (adj), 1, 0);
  gtk_spin_button_set_numeric (GTK_SPIN_BUTTON (w), TRUE);
  return w;
}

static int
spin_value (GtkWidget *w)
{
  return gtk_spin_button_get_value_as_int (GTK_SPIN_BUTTON (w));
}

/* The preset a size matches, or n_presets ("Custom"). */
static int
preset_of (const Dialog *d, int width, int height)
{
  for (int i = 0; i < d->n_presets; i++)
    if (d->presets[i].width == width && d->presets[i].height == height)
      return i;
  return d->n_presets;
}

static void
preset_changed (GtkComboBox *combo, Dialog *d)
{
  int i = gtk_combo_box_get_active (combo);
  if (i < 0 || i >= d->n_presets)
    return;
  d->syncing = TRUE;
  gtk_spin_button_set_value (GTK_SPIN_BUTTON (d->width), d->presets[i].width);
  gtk_spin_button_set_value (GTK_SPIN_BUTTON (d->height), d->presets[i].height);
  d->syncing = FALSE;
}

static void
size_changed (GtkSpinButton *button, Dialog *d)
{
  if (!d->syncing)
    gtk_combo_box_set_active (GTK_COMBO_BOX (d->preset),
                              preset_of (d, spin_value (d->width), spin_value (d->height)));
}

static void
roll_seed (GtkButton *button, Dialog *d)
{
  gtk_spin_button_set_value (GTK_SPIN_BUTTON (d->seed), g_random_int_range (0, G_MAXINT));
}

static void
browse_model (GtkButton *button, Dialog *d)
{
  GtkWidget *chooser = gtk_file_chooser_dialog_new (
      _("Choose a model folder"), GTK_WINDOW (gtk_widget_get_toplevel (GTK_WIDGET (button))),
      GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER, GTK_STOCK_CANCEL, GTK_RESPONSE_CANCEL,
      GTK_STOCK_OPEN, GTK_RESPONSE_ACCEPT, NULL);
  if (gtk_dialog_run (GTK_DIALOG (chooser)) == GTK_RESPONSE_ACCEPT)
    {
      g_autofree char *dir = gtk_file_chooser_get_filename (GTK_FILE_CHOOSER (chooser));
      gtk_entry_set_text (GTK_ENTRY (gtk_bin_get_child (GTK_BIN (d->model))), dir);
    }
  gtk_widget_destroy (chooser);
}

/* The prompt box: a few lines high, wrapping words. */
static GtkWidget *
prompt_box (Dialog *d, const char *text)
{
  GtkWidget *scroll = gtk_scrolled_window_new (NULL, NULL);
  gtk_scrolled_window_set_policy (GTK_SCROLLED_WINDOW (scroll), GTK_POLICY_NEVER,
                                  GTK_POLICY_AUTOMATIC);
  gtk_scrolled_window_set_shadow_type (GTK_SCROLLED_WINDOW (scroll), GTK_SHADOW_IN);
  gtk_widget_set_size_request (scroll, 420, 96);
  d->prompt = gtk_text_view_new ();
  gtk_text_view_set_wrap_mode (GTK_TEXT_VIEW (d->prompt), GTK_WRAP_WORD_CHAR);
  gtk_text_buffer_set_text (gtk_text_view_get_buffer (GTK_TEXT_VIEW (d->prompt)), text, -1);
  gtk_container_add (GTK_CONTAINER (scroll), d->prompt);
  return scroll;
}

/* ---- the model and its download ------------------------------------------------ */

static const char *
model_text (const Dialog *d)
{
  return gtk_entry_get_text (GTK_ENTRY (gtk_bin_get_child (GTK_BIN (d->model))));
}

static void
download_progress (double fraction, const char *text, gpointer data)
{
  Dialog *d = data;
  gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (d->bar), CLAMP (fraction, 0.0, 1.0));
  gtk_progress_bar_set_text (GTK_PROGRESS_BAR (d->bar), text);
}

static void
download_done (const char *dir, const GError *error, gpointer data)
{
  Dialog *d = data;
  gtk_widget_hide (d->bar);
  gtk_button_set_label (GTK_BUTTON (d->fetch), _("_Download"));
  g_autofree char *text = error ? g_strdup (error->message)
                                : g_strdup_printf (_("Installed in %s"), dir);
  gtk_label_set_text (GTK_LABEL (d->status), text);
  gtk_widget_show (d->status);
}

/* Starts fetching the model named in the entry, or stops the download. */
static void
fetch_model (GtkButton *button, Dialog *d)
{
  if (d->download && !bn_gimp_download_finished (d->download))
    {
      bn_gimp_download_cancel (d->download);
      return;
    }
  g_autofree char *name = g_strstrip (g_strdup (model_text (d)));
  if (!*name)
    return;
  bn_gimp_download_free (d->download);
  gtk_widget_hide (d->status);
  gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (d->bar), 0.0);
  gtk_progress_bar_set_text (GTK_PROGRESS_BAR (d->bar), _("Looking for the model"));
  gtk_widget_show (d->bar);
  gtk_button_set_label (GTK_BUTTON (d->fetch), _("_Stop"));
  d->download = bn_gimp_download_start (name, download_progress, download_done, d);
}

static GtkWidget *
model_row (Dialog *d, const char *current)
{
  GtkWidget *box = gtk_vbox_new (FALSE, 4);
  GtkWidget *row = gtk_hbox_new (FALSE, 4);
  gtk_box_pack_start (GTK_BOX (box), row, FALSE, FALSE, 0);
  d->model = gtk_combo_box_text_new_with_entry ();
  g_autoptr (GPtrArray) choices = bn_gimp_model_choices (current);
  for (guint i = 0; i < choices->len; i++)
    gtk_combo_box_text_append_text (GTK_COMBO_BOX_TEXT (d->model), choices->pdata[i]);
  gtk_entry_set_text (GTK_ENTRY (gtk_bin_get_child (GTK_BIN (d->model))), current);
  gtk_widget_set_tooltip_text (d->model, _("An installed model by name, or a model folder"));
  GtkWidget *browse = gtk_button_new_with_mnemonic (_("_Browse…"));
  g_signal_connect (browse, "clicked", G_CALLBACK (browse_model), d);
  d->fetch = gtk_button_new_with_mnemonic (_("_Download"));
  gtk_widget_set_tooltip_text (d->fetch, _("Fetch the model named here; an interrupted "
                                           "download goes on where it stopped"));
  g_signal_connect (d->fetch, "clicked", G_CALLBACK (fetch_model), d);
  gtk_box_pack_start (GTK_BOX (row), d->model, TRUE, TRUE, 0);
  gtk_box_pack_start (GTK_BOX (row), browse, FALSE, FALSE, 0);
  gtk_box_pack_start (GTK_BOX (row), d->fetch, FALSE, FALSE, 0);
  d->bar = gtk_progress_bar_new ();
  d->status = gtk_label_new (NULL);
  gtk_label_set_line_wrap (GTK_LABEL (d->status), TRUE);
  gtk_misc_set_alignment (GTK_MISC (d->status), 0.0, 0.5);
  gtk_box_pack_start (GTK_BOX (box), d->bar, FALSE, FALSE, 0);
  gtk_box_pack_start (GTK_BOX (box), d->status, FALSE, FALSE, 0);
  /* Shown when a download starts or ends. */
  gtk_widget_set_no_show_all (d->bar, TRUE);
  gtk_widget_set_no_show_all (d->status, TRUE);
  return box;
}

static GtkWidget *
seed_row (Dialog *d, gint64 seed)
{
  GtkWidget *row = gtk_hbox_new (FALSE, 4);
  d->seed = spin ((int) seed, -1, G_MAXINT, 1);
  gtk_widget_set_tooltip_text (d->seed, _("The same seed gives the same picture; "
                                          "-1 draws a new one each time"));
  /* U+2684 DIE FACE-5: present in the usual UI fonts, unlike an emoji. */
  GtkWidget *dice = gtk_button_new_with_label ("⚄");
  gtk_widget_set_tooltip_text (dice, _("Roll a random seed"));
  g_signal_connect (dice, "clicked", G_CALLBACK (roll_seed), d);
  gtk_box_pack_start (GTK_BOX (row), d->seed, TRUE, TRUE, 0);
  gtk_box_pack_start (GTK_BOX (row), dice, FALSE, FALSE, 0);
  return row;
}

gboolean
bn_gimp2_dialog (BnGimpValues *v, const BnGimp2DialogOptions *opts)
{
  Dialog d = { 0 };
  d.presets = bn_gimp_presets (&d.n_presets);
  GtkWidget *dialog = gimp_dialog_new (opts->edit ? _("Bonsai Image Edit") : _("Bonsai Image"),
                                       "bonsai-image", NULL, 0, gimp_standard_help_func,
                                       opts->edit ? BN_GIMP_PROC_EDIT : BN_GIMP_PROC_GENERATE,
                                       GTK_STOCK_CANCEL, GTK_RESPONSE_CANCEL,
                                       _("_Generate"), GTK_RESPONSE_OK, NULL);
  gimp_window_set_transient (GTK_WINDOW (dialog));
  GtkWidget *box = gtk_vbox_new (FALSE, 6);
  gtk_container_set_border_width (GTK_CONTAINER (box), 12);
  gtk_box_pack_start (GTK_BOX (gtk_dialog_get_content_area (GTK_DIALOG (dialog))), box, TRUE,
                      TRUE, 0);

  GtkWidget *label = gtk_label_new_with_mnemonic (opts->edit ? _("_What should change?")
                                                             : _("_What should the picture show?"));
  gtk_misc_set_alignment (GTK_MISC (label), 0.0, 0.5);
  gtk_box_pack_start (GTK_BOX (box), label, FALSE, FALSE, 0);
  gtk_box_pack_start (GTK_BOX (box), prompt_box (&d, v->prompt), TRUE, TRUE, 0);
  gtk_label_set_mnemonic_widget (GTK_LABEL (label), d.prompt);

  GtkWidget *table = gtk_table_new (8, 3, FALSE);
  gtk_table_set_col_spacings (GTK_TABLE (table), 6);
  gtk_table_set_row_spacings (GTK_TABLE (table), 6);
  gtk_box_pack_start (GTK_BOX (box), table, FALSE, FALSE, 0);
  int row = 0;
  if (!opts->edit)
    {
      d.preset = gtk_combo_box_text_new ();
      for (int i = 0; i < d.n_presets; i++)
        {
          g_autofree char *text = g_strdup_printf ("%s (%d × %d)", _(d.presets[i].label),
                                                   d.presets[i].width, d.presets[i].height);
          gtk_combo_box_text_append_text (GTK_COMBO_BOX_TEXT (d.preset), text);
        }
      gtk_combo_box_text_append_text (GTK_COMBO_BOX_TEXT (d.preset), _("Custom"));
      gimp_table_attach_aligned (GTK_TABLE (table), 0, row++, _("_Size:"), 0.0, 0.5, d.preset,
                                 1, FALSE);
      d.width = spin (v->width, 16, BONSAI_MAX_SIDE, 16);
      d.height = spin (v->height, 16, BONSAI_MAX_SIDE, 16);
      gimp_table_attach_aligned (GTK_TABLE (table), 0, row++, _("_Width:"), 0.0, 0.5, d.width,
                                 1, TRUE);
      gimp_table_attach_aligned (GTK_TABLE (table), 0, row++, _("_Height:"), 0.0, 0.5, d.height,
                                 1, TRUE);
      gtk_combo_box_set_active (GTK_COMBO_BOX (d.preset), preset_of (&d, v->width, v->height));
      g_signal_connect (d.preset, "changed", G_CALLBACK (preset_changed), &d);
      g_signal_connect (d.width, "value-changed", G_CALLBACK (size_changed), &d);
      g_signal_connect (d.height, "value-changed", G_CALLBACK (size_changed), &d);
    }
  d.steps = spin (v->steps, 1, BONSAI_MAX_STEPS, 1);
  gimp_table_attach_aligned (GTK_TABLE (table), 0, row++, _("S_teps:"), 0.0, 0.5, d.steps, 1,
                             TRUE);
  gimp_table_attach_aligned (GTK_TABLE (table), 0, row++, _("S_eed:"), 0.0, 0.5,
                             seed_row (&d, v->seed), 1, FALSE);
  gimp_table_attach_aligned (GTK_TABLE (table), 0, row++, _("_Model:"), 0.0, 0.5,
                             model_row (&d, v->model), 1, FALSE);
  if (opts->edit)
    {
      d.margin = spin (v->margin, 0, BN_GIMP_MAX_MARGIN, 8);
      d.feather = spin (v->feather, 0, BN_GIMP_MAX_FEATHER, 1);
      gtk_widget_set_tooltip_text (d.margin,
                                   _("Pixels around the selection the model sees as context"));
      gimp_table_attach_aligned (GTK_TABLE (table), 0, row++, _("Context _margin:"), 0.0, 0.5,
                                 d.margin, 1, TRUE);
      gimp_table_attach_aligned (GTK_TABLE (table), 0, row++, _("_Feather edges:"), 0.0, 0.5,
                                 d.feather, 1, TRUE);
      gtk_widget_set_sensitive (d.margin, opts->has_selection);
      gtk_widget_set_sensitive (d.feather, opts->has_selection);
    }
  else
    {
      GtkWidget *new_image = gtk_radio_button_new_with_mnemonic (NULL, _("As a new _image"));
      d.new_layer = gtk_radio_button_new_with_mnemonic_from_widget (
          GTK_RADIO_BUTTON (new_image), _("As a new _layer in this image"));
      GtkWidget *choice = gtk_vbox_new (FALSE, 2);
      gtk_box_pack_start (GTK_BOX (choice), new_image, FALSE, FALSE, 0);
      gtk_box_pack_start (GTK_BOX (choice), d.new_layer, FALSE, FALSE, 0);
      gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (d.new_layer),
                                    opts->has_image && v->output == BN_GIMP_OUTPUT_NEW_LAYER);
      gtk_widget_set_sensitive (d.new_layer, opts->has_image);
      gimp_table_attach_aligned (GTK_TABLE (table), 0, row++, _("Result:"), 0.0, 0.0, choice,
                                 1, FALSE);
    }

  gtk_widget_show_all (dialog);
  gboolean ok = gimp_dialog_run (GIMP_DIALOG (dialog)) == GTK_RESPONSE_OK;
  if (ok)
    {
      GtkTextBuffer *buffer = gtk_text_view_get_buffer (GTK_TEXT_VIEW (d.prompt));
      GtkTextIter start, end;
      gtk_text_buffer_get_bounds (buffer, &start, &end);
      g_autofree char *prompt = gtk_text_buffer_get_text (buffer, &start, &end, FALSE);
      g_autofree char *model = g_strstrip (g_strdup (model_text (&d)));
      bn_gimp_values_set_strings (v, prompt, model);
      v->steps = spin_value (d.steps);
      v->seed = spin_value (d.seed);
      if (opts->edit)
        {
          v->margin = spin_value (d.margin);
          v->feather = spin_value (d.feather);
        }
      else
        {
          v->width = spin_value (d.width);
          v->height = spin_value (d.height);
          v->output = gtk_toggle_button_get_active (GTK_TOGGLE_BUTTON (d.new_layer))
                          ? BN_GIMP_OUTPUT_NEW_LAYER
                          : BN_GIMP_OUTPUT_NEW_IMAGE;
        }
    }
  bn_gimp_download_free (d.download);
  gtk_widget_destroy (dialog);
  return ok;
}
