/* cmd-inspect.c — `nextstep inspect MODEL [--vae DIR] [--json]`: checks a
 * model folder (config, every tensor against the architecture the config
 * describes, tokenizer ids, the VAE) and prints what it holds. Exit status 0
 * only when everything is present and consistent. */
#include <stdio.h>
#include <string.h>
#include <json-glib/json-glib.h>

#include "nextstep.h"
#include "commands.h"
#include "files/config.h"
#include "files/json-load.h"
#include "files/safetensors.h"
#include "files/torch-checkpoint.h"
#include "model/arch.h"
#include "model/vae.h"

typedef struct {
  JsonBuilder *out;      /* the report, one JSON object */
  GPtrArray *problems;   /* strings */
} Report;

static void G_GNUC_PRINTF (2, 3)
problem (Report *r, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_ptr_array_add (r->problems, g_strdup_vprintf (fmt, ap));
  va_end (ap);
}

static void
set_int (Report *r, const char *key, int64_t v)
{
  json_builder_set_member_name (r->out, key);
  json_builder_add_int_value (r->out, v);
}

static void
set_double (Report *r, const char *key, double v)
{
  json_builder_set_member_name (r->out, key);
  json_builder_add_double_value (r->out, v);
}

static void
set_bool (Report *r, const char *key, gboolean v)
{
  json_builder_set_member_name (r->out, key);
  json_builder_add_boolean_value (r->out, v);
}

static void
set_string (Report *r, const char *key, const char *v)
{
  json_builder_set_member_name (r->out, key);
  if (v != NULL)
    json_builder_add_string_value (r->out, v);
  else
    json_builder_add_null_value (r->out);
}

/* parameters (every element, buffers included), tensors, bytes, dtypes. */
static void
add_store_stats (Report *r, const NsTensorStore *store)
{
  int64_t per_dtype[NS_DTYPE_COUNT] = { 0 };
  guint64 bytes = 0;
  for (guint i = 0; i < ns_tensor_store_len (store); i++)
    {
      const NsTensorView *t = ns_tensor_store_get (store, i);
      per_dtype[t->dtype] += ns_tensor_n_elements (t);
      bytes += t->n_bytes;
    }
  set_int (r, "parameters", ns_tensor_store_n_elements (store));
  set_int (r, "tensors", ns_tensor_store_len (store));
  set_int (r, "bytes", (int64_t) bytes);
  json_builder_set_member_name (r->out, "dtypes");
  json_builder_begin_object (r->out);
  for (int d = 0; d < NS_DTYPE_COUNT; d++)
    if (per_dtype[d] > 0)
      set_int (r, ns_dtype_name ((NsDType) d), per_dtype[d]);
  json_builder_end_object (r->out);
}

static void
add_architecture (Report *r, const NsModelConfig *c)
{
  set_int (r, "hidden_size", c->hidden_size);
  set_int (r, "layers", c->num_hidden_layers);
  set_int (r, "attention_heads", c->num_attention_heads);
  set_int (r, "key_value_heads", c->num_key_value_heads);
  set_int (r, "head_dim", c->head_dim);
  set_int (r, "intermediate_size", c->intermediate_size);
  set_int (r, "vocab_size", c->vocab_size);
  set_double (r, "rope_theta", c->rope_theta);
  set_double (r, "rms_norm_eps", c->rms_norm_eps);
  set_bool (r, "tie_word_embeddings", c->tie_word_embeddings);
  set_int (r, "fm_head_dim", c->fm_head_dim);
  set_int (r, "fm_head_layers", c->fm_head_layers);
  set_double (r, "fm_head_mlp_ratio", c->fm_head_mlp_ratio);
  set_int (r, "latent_channels", c->latent_channels);
  set_int (r, "latent_patch_size", c->latent_patch_size);
  set_bool (r, "use_gen_pos_embed", c->use_gen_pos_embed);
}

/* config.json, then the tensors: counted even when the config is unusable,
 * checked against the architecture when it is. When the config cannot be
 * read, `cfg` is left with no token ids (-1) for inspect_tokens. */
static void
inspect_model (Report *r, const char *dir, NsModelConfig *cfg)
{
  g_autofree char *path = g_build_filename (dir, "config.json", NULL);
  g_autoptr (GError) error = NULL;
  gboolean have_cfg = ns_model_config_load (cfg, path, &error);
  if (!have_cfg)
    {
      problem (r, "%s", error->message);
      g_clear_error (&error);
      cfg->boi = cfg->eoi = cfg->image_placeholder_id = cfg->pad_token_id = -1;
      cfg->bos_token_id = cfg->eos_token_id = -1;
    }
  NsModelKind kind = ns_arch_guess_kind (dir, have_cfg ? cfg : NULL);
  set_string (r, "kind", kind == NS_MODEL_KIND_EDIT ? "edit" : "t2i");
  if (have_cfg)
    add_architecture (r, cfg);

  g_autoptr (NsTensorStore) store = ns_safetensors_load_dir (dir, &error);
  if (store == NULL)
    {
      problem (r, "%s", error->message);
      return;
    }
  add_store_stats (r, store);
  if (have_cfg)
    ns_arch_check_model (store, cfg, r->problems);
}

/* ---- tokenizer ids ------------------------------------------------------- */

/* Index just past the JSON string starting at text[i] (a quote). */
static gsize
skip_string (const char *text, gsize len, gsize i)
{
  for (i++; i < len && text[i] != '"'; i++)
    if (text[i] == '\\')
      i++;
  return i + 1;
}

static gsize
skip_space (const char *text, gsize len, gsize i)
{
  while (i < len && g_ascii_isspace (text[i]))
    i++;
  return i;
}

/* Sets *end just past the array or object that starts at text[i]. */
static gboolean
find_close (const char *text, gsize len, gsize i, gsize *end)
{
  int depth = 0;
  for (; i < len; i++)
    {
      char c = text[i];
      if (c == '"')
        i = skip_string (text, len, i) - 1;
      else if (c == '[' || c == '{')
        depth++;
      else if ((c == ']' || c == '}') && --depth == 0)
        {
          *end = i + 1;
          return TRUE;
        }
    }
  return FALSE;
}

/* Finds the list value of member `key` of the top-level object of a JSON
 * text without parsing the rest: tokenizer.json is megabytes of BPE
 * vocabulary while inspect needs only its short added_tokens list. Sets
 * [*start, *end) to the list's span; the caller parses that span. */
static gboolean
find_member (const char *text, gsize len, const char *key, gsize *start, gsize *end)
{
  int depth = 0;
  gsize klen = strlen (key);
  for (gsize i = 0; i < len; i++)
    {
      char c = text[i];
      if (c == '{' || c == '[')
        depth++;
      else if (c == '}' || c == ']')
        depth--;
      if (c != '"')
        continue;
      gsize after = skip_string (text, len, i);
      gboolean is_key = depth == 1 && after - i - 2 == klen
                        && memcmp (text + i + 1, key, klen) == 0;
      i = after - 1;
      gsize j = skip_space (text, len, after);
      if (!is_key || j >= len || text[j] != ':')
        continue;
      j = skip_space (text, len, j + 1);
      *start = j;
      return j < len && text[j] == '[' && find_close (text, len, j, end);
    }
  return FALSE;
}

/* content → id of tokenizer.json's added_tokens (a new table). */
static GHashTable *
load_added_tokens (const char *path, GError **error)
{
  g_autofree char *text = NULL;
  gsize len = 0, start = 0, end = 0;
  if (!g_file_get_contents (path, &text, &len, error))
    return NULL;
  if (!find_member (text, len, "added_tokens", &start, &end))
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FORMAT, "%s has no added_tokens list", path);
      return NULL;
    }
  g_autofree char *label = g_strdup_printf ("%s: added_tokens", path);
  g_autoptr (JsonNode) root = ns_json_load (text + start, end - start, label,
                                            "the file is damaged: download it again", 0, error);
  if (root == NULL)
    return NULL;
  GHashTable *ids = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  JsonArray *list = JSON_NODE_HOLDS_ARRAY (root) ? json_node_get_array (root) : NULL;
  for (guint i = 0; list != NULL && i < json_array_get_length (list); i++)
    {
      JsonNode *n = json_array_get_element (list, i);
      JsonObject *o = JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
      JsonNode *c = o ? json_object_get_member (o, "content") : NULL;
      JsonNode *d = o ? json_object_get_member (o, "id") : NULL;
      const char *content = c && json_node_get_value_type (c) == G_TYPE_STRING
                            ? json_node_get_string (c) : NULL;
      gint64 id = d && json_node_get_value_type (d) == G_TYPE_INT64 ? json_node_get_int (d) : -1;
      if (content == NULL || id < 0)
        {
          g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                       "%s: added_tokens entry %u has no content or id", path, i);
          g_hash_table_unref (ids);
          return NULL;
        }
      g_hash_table_insert (ids, g_strdup (content), GINT_TO_POINTER ((int) id));
    }
  return ids;
}

/* Orders added-token contents by id, so the report reads like the file. */
static int
compare_ids (gconstpointer a, gconstpointer b, gpointer added)
{
  return GPOINTER_TO_INT (g_hash_table_lookup (added, a))
         - GPOINTER_TO_INT (g_hash_table_lookup (added, b));
}

/* A config id must name the token the prompt builder writes for it. */
static void
check_token (Report *r, GHashTable *added, const char *tok_path, const char *field, int id,
             const char *content)
{
  gpointer value;
  if (content == NULL || id < 0)
    return;
  if (!g_hash_table_lookup_extended (added, content, NULL, &value))
    problem (r, "%s has no added token %s (config.json %s is %d)", tok_path, content, field, id);
  else if (GPOINTER_TO_INT (value) != id)
    problem (r, "config.json %s is %d but %s gives %s the id %d", field, id, tok_path, content,
             GPOINTER_TO_INT (value));
}

/* The added tokens by id, and their agreement with config.json. */
static void
report_added_tokens (Report *r, GHashTable *added, const char *tok_path,
                     const NsModelConfig *cfg, const char *pad_token)
{
  g_autoptr (GList) contents = g_hash_table_get_keys (added);
  contents = g_list_sort_with_data (contents, compare_ids, added);
  for (GList *l = contents; l != NULL; l = l->next)
    {
      int id = GPOINTER_TO_INT (g_hash_table_lookup (added, l->data));
      set_int (r, l->data, id);
      /* An id past the embedding table would index outside it. */
      if (cfg->vocab_size > 0 && id >= cfg->vocab_size)
        problem (r, "%s gives %s the id %d, beyond config.json vocab_size %" G_GINT64_FORMAT,
                 tok_path, (char *) l->data, id, cfg->vocab_size);
    }
  check_token (r, added, tok_path, "boi", cfg->boi, "<|begin_of_image|>");
  check_token (r, added, tok_path, "eoi", cfg->eoi, "<|end_of_image|>");
  check_token (r, added, tok_path, "image_placeholder_id", cfg->image_placeholder_id,
               "<|image_placeholder|>");
  check_token (r, added, tok_path, "pad_token_id", cfg->pad_token_id, pad_token);
  if (!g_hash_table_contains (added, "<|image_area|>"))
    problem (r, "%s has no added token <|image_area|>, which every prompt uses", tok_path);
}

/* special_tokens: the config's ids, then tokenizer.json's added tokens. */
static void
inspect_tokens (Report *r, const char *dir, const NsModelConfig *cfg)
{
  const struct { const char *field; int id; } config_ids[] = {
    { "boi", cfg->boi }, { "eoi", cfg->eoi },
    { "image_placeholder_id", cfg->image_placeholder_id },
    { "pad_token_id", cfg->pad_token_id },
    { "bos_token_id", cfg->bos_token_id }, { "eos_token_id", cfg->eos_token_id },
  };
  g_autofree char *tok_path = g_build_filename (dir, "tokenizer.json", NULL);
  g_autofree char *conf_path = g_build_filename (dir, "tokenizer_config.json", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (GHashTable) added = load_added_tokens (tok_path, &error);
  if (added == NULL)
    problem (r, "%s", error->message);
  g_clear_error (&error);
  NsTokenizerConfig tc;
  gboolean have_tc = ns_tokenizer_config_load (&tc, conf_path, &error);
  if (!have_tc)
    problem (r, "%s", error->message);
  else
    set_string (r, "bos_token", tc.bos_token);

  json_builder_set_member_name (r->out, "special_tokens");
  json_builder_begin_object (r->out);
  for (gsize i = 0; i < G_N_ELEMENTS (config_ids); i++)
    if (config_ids[i].id >= 0)
      set_int (r, config_ids[i].field, config_ids[i].id);
  if (added != NULL)
    report_added_tokens (r, added, tok_path, cfg, have_tc ? tc.pad_token : NULL);
  json_builder_end_object (r->out);
  if (have_tc)
    ns_tokenizer_config_clear (&tc);
}

/* ---- VAE ----------------------------------------------------------------- */

static void
add_vae_config (Report *r, const NsVaeConfig *v)
{
  set_int (r, "resolution", v->resolution);
  set_int (r, "ch", v->ch);
  json_builder_set_member_name (r->out, "ch_mult");
  json_builder_begin_array (r->out);
  for (int i = 0; i < v->n_ch_mult; i++)
    json_builder_add_int_value (r->out, v->ch_mult[i]);
  json_builder_end_array (r->out);
  set_int (r, "num_res_blocks", v->num_res_blocks);
  set_int (r, "z_channels", v->z_channels);
  set_double (r, "scaling_factor", v->scaling_factor);
  set_double (r, "shift_factor", v->shift_factor);
  set_bool (r, "deterministic", v->deterministic);
  set_bool (r, "encoder_norm", v->encoder_norm);
  set_int (r, "psz", v->psz);
}

static void
inspect_vae (Report *r, const char *model_dir, const char *vae_opt)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = ns_vae_find (model_dir, vae_opt, &error);
  json_builder_set_member_name (r->out, "vae");
  json_builder_begin_object (r->out);
  set_string (r, "dir", dir);
  if (dir == NULL)
    {
      problem (r, "%s", error->message);
      json_builder_end_object (r->out);
      return;
    }
  NsVaeConfig cfg;
  g_autofree char *config_path = g_build_filename (dir, "config.json", NULL);
  g_autofree char *ckpt_path = g_build_filename (dir, "checkpoint.pt", NULL);
  g_autoptr (NsTensorStore) store = NULL;
  if (!ns_vae_config_load (&cfg, config_path, &error))
    problem (r, "%s", error->message);
  else
    {
      add_vae_config (r, &cfg);
      store = ns_torch_checkpoint_load (ckpt_path, &error);
      if (store == NULL)
        problem (r, "%s", error->message);
    }
  if (store != NULL)
    {
      add_store_stats (r, store);
      guint before = r->problems->len;
      ns_vae_check (store, &cfg, r->problems);
      for (guint i = before; i < r->problems->len; i++)
        {
          char *line = r->problems->pdata[i];
          r->problems->pdata[i] = g_strdup_printf ("%s: %s", ckpt_path, line);
          g_free (line);
        }
    }
  json_builder_end_object (r->out);
}

/* ---- output -------------------------------------------------------------- */

/* Scalars as a person reads them: strings bare, doubles short. */
static char *
value_text (JsonNode *node)
{
  if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING)
    return g_strdup (json_node_get_string (node));
  if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_DOUBLE)
    return g_strdup_printf ("%g", json_node_get_double (node));
  return json_to_string (node, FALSE);
}

/* The members of an object in the order they were added. */
static void
print_members (JsonObject *obj, int indent)
{
  g_autoptr (GList) keys = json_object_get_members (obj);
  for (GList *l = keys; l != NULL; l = l->next)
    {
      JsonNode *v = json_object_get_member (obj, l->data);
      if (strcmp (l->data, "problems") == 0)
        continue;
      if (JSON_NODE_HOLDS_OBJECT (v))
        {
          printf ("%*s%s:\n", indent, "", (char *) l->data);
          print_members (json_node_get_object (v), indent + 2);
          continue;
        }
      g_autofree char *text = value_text (v);
      printf ("%*s%-24s %s\n", indent, "", (char *) l->data, text);
    }
}

static void
print_report (JsonNode *root, gboolean as_json)
{
  if (as_json)
    {
      g_autofree char *text = json_to_string (root, TRUE);
      printf ("%s\n", text);
    }
  else
    print_members (json_node_get_object (root), 0);
}

/* `inspect --server URL`: what the server offers, per model. */
static int
inspect_server (const char *prog, const char *server, const char *api_key, gboolean as_json)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) models = ns_server_list_models (server, api_key, NULL, &error);
  if (models == NULL)
    {
      fprintf (stderr, "%s: %s\n", prog, error->message);
      return 1;
    }
  Report r = { json_builder_new (), NULL };
  json_builder_begin_object (r.out);
  set_string (&r, "server", server);
  json_builder_set_member_name (r.out, "models");
  json_builder_begin_object (r.out);
  for (guint i = 0; i < models->len; i++)
    {
      const NsServerModel *sm = models->pdata[i];
      json_builder_set_member_name (r.out, sm->id);
      json_builder_begin_object (r.out);
      set_string (&r, "kind", sm->kind == NS_MODEL_KIND_EDIT ? "edit" : "t2i");
      /* Only `nextstep serve` edits and streams previews (vLLM-Omni: text to image). */
      set_bool (&r, "generate", TRUE);
      set_bool (&r, "edit", sm->nextstep);
      set_bool (&r, "previews", sm->nextstep);
      set_string (&r, "server_kind", sm->nextstep ? "nextstep serve" : "OpenAI-style (vLLM-Omni)");
      json_builder_end_object (r.out);
    }
  json_builder_end_object (r.out);
  json_builder_end_object (r.out);
  g_autoptr (JsonNode) root = json_builder_get_root (r.out);
  print_report (root, as_json);
  g_object_unref (r.out);
  return models->len > 0 ? 0 : 1;
}

int
ns_cmd_inspect (int argc, char **argv)
{
  g_autofree char *vae_opt = NULL, *server = NULL, *api_key = NULL;
  gboolean as_json = FALSE;
  GOptionEntry entries[] = {
    { "vae", 0, 0, G_OPTION_ARG_FILENAME, &vae_opt,
      "VAE folder (default: beside the model, or in the Hugging Face cache)", "DIR" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &as_json, "Print one JSON object", NULL },
    { "server", 0, 0, G_OPTION_ARG_STRING, &server,
      "Show what an image server offers instead (nextstep serve, vLLM-Omni)", "URL" },
    { "api-key", 0, 0, G_OPTION_ARG_STRING, &api_key, "The server's API key", "KEY" },
    G_OPTION_ENTRY_NULL
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new (
    "[MODEL] — check a NextStep-1 model folder and print what it holds");
  g_option_context_set_summary (ctx,
    "MODEL is a model folder or a Hugging Face cache repo folder; without it the model is\n"
    "looked up as generate does ($NEXTSTEP_MODEL, then the Hugging Face cache).\n"
    "Exit status 0 only when the model, its tokenizer and its VAE are complete and consistent.");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || argc > 2)
    {
      fprintf (stderr, "%s: %s\n", argv[0], error ? error->message : "too many arguments");
      return 2;
    }
  if (server != NULL)
    return inspect_server (argv[0], server, api_key, as_json);
  g_autofree char *dir = ns_model_find (argc == 2 ? argv[1] : NULL, FALSE, &error);
  if (dir == NULL)
    {
      fprintf (stderr, "%s: %s\n", argv[0], error->message);
      return 1;
    }

  Report r = { json_builder_new (), g_ptr_array_new_with_free_func (g_free) };
  NsModelConfig cfg;
  json_builder_begin_object (r.out);
  set_string (&r, "model_dir", dir);
  inspect_model (&r, dir, &cfg);
  inspect_tokens (&r, dir, &cfg);
  ns_model_config_clear (&cfg);
  inspect_vae (&r, dir, vae_opt);
  json_builder_set_member_name (r.out, "problems");
  json_builder_begin_array (r.out);
  for (guint i = 0; i < r.problems->len; i++)
    json_builder_add_string_value (r.out, r.problems->pdata[i]);
  json_builder_end_array (r.out);
  json_builder_end_object (r.out);

  g_autoptr (JsonNode) root = json_builder_get_root (r.out);
  print_report (root, as_json);
  for (guint i = 0; i < r.problems->len; i++)
    fprintf (stderr, "%s: %s\n", argv[0], (char *) r.problems->pdata[i]);
  if (r.problems->len > 0)
    fprintf (stderr, "%s: %u problem(s) in %s\n", argv[0], r.problems->len, dir);
  else if (!as_json)
    printf ("No problems: the model is complete.\n");
  int status = r.problems->len == 0 ? 0 : 1;
  g_object_unref (r.out);
  g_ptr_array_unref (r.problems);
  return status;
}
