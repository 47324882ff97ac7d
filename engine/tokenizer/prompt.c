/* prompt.c — the id rows the official NextStep pipeline feeds the model
 * (docs/model.md §4).
 *
 * Each row is built as one string, as the official code concatenates it,
 * and tokenized once; the special tokens inside it are found as added
 * tokens:
 *   [BOS] [IMG] text PREFIX,   PREFIX = "<|image_area|>{h}*{w}<|begin_of_image|>"
 *   IMG = "<|image_area|>{h_in}*{w_in}<|begin_of_image|>" + placeholder × h_in·w_in
 *         + "<|end_of_image|>"   (edit rows that carry the input image)
 * BOS: when tokenizer_config.json names a bos_token, its text starts every
 * row — the Feb-2026 release's behaviour (bos_token + caption). The
 * Aug-2025 release and the shipped tokenizer (bos_token null) add none.
 * Rows: cond × n, uncond(1) × n (, uncond2 × n), left-padded with pad_id. */
#include <string.h>

#include "nextstep.h"
#include "tokenizer.h"

#define IMAGE_AREA "<|image_area|>"
#define BOI "<|begin_of_image|>"
#define EOI "<|end_of_image|>"
#define PLACEHOLDER "<|image_placeholder|>"
#define MAX_GRID 1024           /* tokens per side: 16k pixels */
#define MAX_IMAGES 256

/* The tokenizer's id of `content` must be the id config.json gives it. */
static gboolean
check_special (NsTokenizer *tok, const char *content, const char *field, int32_t want,
               GError **error)
{
  int32_t id = ns_tokenizer_token_id (tok, content);
  if (id == want)
    return TRUE;
  g_set_error (error, NS_ERROR, NS_ERROR_MODEL,
               "config.json gives %s = %d but the tokenizer has %s as id %d; "
               "the model folder mixes files of different checkpoints",
               field, want, content, id);
  return FALSE;
}

static gboolean
check_spec (NsTokenizer *tok, const NsPromptSpec *spec, GError **error)
{
  const char *bad = NULL;
  if (spec->caption == NULL)
    bad = "a caption is required";
  else if (spec->images < 1 || spec->images > MAX_IMAGES)
    bad = "the image count must be 1..256";
  else if (spec->out_h < 1 || spec->out_w < 1 || spec->out_h > MAX_GRID || spec->out_w > MAX_GRID)
    bad = "the output grid must be 1..1024 tokens per side";
  else if (spec->edit && (spec->in_h < 1 || spec->in_w < 1 || spec->in_h > MAX_GRID
                          || spec->in_w > MAX_GRID))
    bad = "the input image grid must be 1..1024 tokens per side";
  else if (!(spec->cfg >= 1.0) || (spec->edit && !(spec->cfg_img >= 1.0)))
    bad = "cfg and cfg_img must be at least 1 (the official sampler mishandles values below 1)";
  else if (spec->edit && spec->cfg == 1.0 && spec->cfg_img != 1.0)
    bad = "image guidance alone (cfg = 1, cfg_img ≠ 1) has no rows in the official pipeline; "
          "set cfg above 1 or cfg_img to 1";
  else if (spec->pad_id < 0)
    bad = "the pad token id must not be negative";
  if (bad != NULL)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT, "prompt: %s", bad);
      return FALSE;
    }
  if (ns_tokenizer_token_id (tok, IMAGE_AREA) < 0)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_MODEL, "the tokenizer has no %s token; it is "
                   "not a NextStep tokenizer", IMAGE_AREA);
      return FALSE;
    }
  return check_special (tok, BOI, "boi", spec->boi_id, error)
         && (!spec->edit
             || (check_special (tok, EOI, "eoi", spec->eoi_id, error)
                 && check_special (tok, PLACEHOLDER, "image_placeholder_id",
                                   spec->placeholder_id, error)));
}

/* The text of one row. */
static char *
row_text (const char *bos, const char *image, const char *text, const char *extra,
          const char *prefix)
{
  GString *s = g_string_new (bos);
  g_string_append (s, image);
  g_string_append (s, text);
  if (extra != NULL && *extra != '\0')
    g_string_append_printf (s, " %s", extra);
  g_string_append (s, prefix);
  return g_string_free (s, FALSE);
}

static char *
image_string (const NsPromptSpec *spec)
{
  GString *s = g_string_new (NULL);
  g_string_printf (s, IMAGE_AREA "%d*%d" BOI, spec->in_h, spec->in_w);
  for (int i = 0; i < spec->in_h * spec->in_w; i++)
    g_string_append (s, PLACEHOLDER);
  g_string_append (s, EOI);
  return g_string_free (s, FALSE);
}

/* The distinct row texts in block order (cond, uncond1, uncond2); how many
 * input-image copies each block's rows take goes to `with_image`. */
static GPtrArray *
block_texts (NsTokenizer *tok, const NsPromptSpec *spec, gboolean with_image[3])
{
  const char *bos = ns_tokenizer_bos_token (tok) ? ns_tokenizer_bos_token (tok) : "";
  const char *negative = spec->negative ? spec->negative : "";
  g_autofree char *prefix = g_strdup_printf (IMAGE_AREA "%d*%d" BOI, spec->out_h, spec->out_w);
  g_autofree char *image = spec->edit ? image_string (spec) : g_strdup ("");
  GPtrArray *texts = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (texts, row_text (bos, image, spec->caption, spec->positive, prefix));
  with_image[0] = spec->edit;
  if (spec->edit && spec->cfg != 1.0 && spec->cfg_img != 1.0)
    {
      g_ptr_array_add (texts, row_text (bos, image, negative, NULL, prefix));
      with_image[1] = TRUE;
    }
  if (spec->cfg != 1.0)
    {
      with_image[texts->len] = FALSE;
      g_ptr_array_add (texts, row_text (bos, "", negative, NULL, prefix));
    }
  return texts;
}

/* Tokenizes a block's text and checks that the user's text did not add or
 * hide image placeholders (they are filled from the input latents). */
static GArray *
block_ids (NsTokenizer *tok, const NsPromptSpec *spec, const char *text, gboolean with_image,
           GError **error)
{
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
  if (!ns_tokenizer_encode (tok, text, -1, ids, error))
    return NULL;
  int want = with_image ? spec->in_h * spec->in_w : 0, have = 0;
  for (guint i = 0; i < ids->len; i++)
    have += g_array_index (ids, int32_t, i) == spec->placeholder_id;
  if (spec->edit && have != want)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                   "prompt: the caption or negative prompt contains the text %s; "
                   "remove it (image placeholders are placed by the engine)", PLACEHOLDER);
      return NULL;
    }
  return g_steal_pointer (&ids);
}

static NsPromptRows *
pad_rows (GPtrArray *blocks, int n, int32_t pad_id)
{
  NsPromptRows *rows = g_new0 (NsPromptRows, 1);
  rows->cfg_mult = (int) blocks->len;
  rows->rows = rows->cfg_mult * n;
  for (guint b = 0; b < blocks->len; b++)
    rows->len = MAX (rows->len, (int) ((GArray *) blocks->pdata[b])->len);
  rows->ids = g_new (int32_t, (gsize) rows->rows * rows->len);
  rows->mask = g_new0 (int32_t, (gsize) rows->rows * rows->len);
  for (int r = 0; r < rows->rows; r++)
    {
      GArray *ids = blocks->pdata[r / n];
      int pad = rows->len - (int) ids->len;
      int32_t *row = rows->ids + (gsize) r * rows->len;
      for (int i = 0; i < pad; i++)
        row[i] = pad_id;
      memcpy (row + pad, ids->data, ids->len * sizeof (int32_t));
      for (int i = pad; i < rows->len; i++)
        rows->mask[(gsize) r * rows->len + i] = 1;
    }
  return rows;
}

NsPromptRows *
ns_prompt_build (NsTokenizer *tok, const NsPromptSpec *spec, GError **error)
{
  g_return_val_if_fail (tok != NULL && spec != NULL, NULL);
  if (!check_spec (tok, spec, error))
    return NULL;
  gboolean with_image[3] = { FALSE, FALSE, FALSE };
  g_autoptr (GPtrArray) texts = block_texts (tok, spec, with_image);
  g_autoptr (GPtrArray) blocks = g_ptr_array_new_with_free_func ((GDestroyNotify) g_array_unref);
  int image_blocks = 0;
  for (guint b = 0; b < texts->len; b++)
    {
      GArray *ids = block_ids (tok, spec, texts->pdata[b], with_image[b], error);
      if (ids == NULL)
        return NULL;
      g_ptr_array_add (blocks, ids);
      image_blocks += with_image[b];
    }
  NsPromptRows *rows = pad_rows (blocks, spec->images, spec->pad_id);
  rows->n_placeholder_images = image_blocks * spec->images;
  return rows;
}

void
ns_prompt_rows_free (NsPromptRows *rows)
{
  if (rows == NULL)
    return;
  g_free (rows->ids);
  g_free (rows->mask);
  g_free (rows);
}
