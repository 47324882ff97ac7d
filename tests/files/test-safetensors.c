/* test-safetensors.c — safetensors reader, index, folder loading and writer:
 * the golden models, round trips and damaged files. */
#include <string.h>
#include <glib/gstdio.h>

#include "nextstep.h"
#include "files/safetensors.h"
#include "test-util.h"
#include "files-test-util.h"

/* ---- golden models ---- */

static void
test_golden_models (void)
{
  g_autofree char *summary_path = ns_test_golden_path ("summary.json", NULL);
  if (summary_path == NULL)
    {
      g_test_skip ("no golden data (NS_GOLDEN_DIR)");
      return;
    }
  g_autoptr (JsonParser) summary = ns_test_load_json (summary_path);
  JsonObject *cases = json_object_get_object_member (json_node_get_object (json_parser_get_root (summary)),
                                                     "cases");
  g_autoptr (GList) names = json_object_get_members (cases);
  g_assert_nonnull (names);
  for (GList *l = names; l != NULL; l = l->next)
    {
      JsonObject *c = json_object_get_object_member (cases, l->data);
      g_autofree char *dir = ns_test_golden_path (l->data, "model", NULL);
      g_autoptr (GError) error = NULL;
      gint64 t0 = g_get_monotonic_time ();
      g_autoptr (NsTensorStore) store = ns_safetensors_load_dir (dir, &error);
      gint64 t1 = g_get_monotonic_time ();
      g_assert_no_error (error);
      g_test_message ("%s: %u tensors, headers of %" G_GINT64_FORMAT " shards parsed in %.2f ms",
                      (const char *) l->data, ns_tensor_store_len (store),
                      json_object_get_int_member (c, "model_shards"), (t1 - t0) / 1000.0);
      g_assert_cmpint (ns_tensor_store_n_elements (store), ==,
                       json_object_get_int_member (c, "model_tensor_elements"));
      g_assert_cmpint (ns_tensor_store_len (store), ==, json_object_get_int_member (c, "model_tensors"));
      /* no copy: every view lies in a mapping of its shard */
      for (guint i = 0; i < ns_tensor_store_len (store); i++)
        {
          const NsTensorView *t = ns_tensor_store_get (store, i);
          g_assert_true (g_str_has_prefix (t->file, dir));
          g_autofree char *base = g_path_get_basename (t->file);
          if (t->n_bytes > 0)
            g_assert_true (ns_files_test_is_mapped_from (t->data, base));
        }
    }
}

/* ---- writer round trip ---- */

typedef struct {
  const char *name;
  NsDType dtype;
  int n_dims;
  int64_t shape[3];
} Spec;

static const Spec round_trip_specs[] = {
  { "w.bf16", NS_DTYPE_BF16, 2, { 3, 5 } },
  { "w.f32", NS_DTYPE_F32, 3, { 2, 1, 3 } },
  { "w.f16", NS_DTYPE_F16, 1, { 7 } },
  { "scalar", NS_DTYPE_F64, 0, { 0 } },
  { "empty", NS_DTYPE_F32, 2, { 0, 4 } },
  { "ids", NS_DTYPE_I64, 1, { 3 } },
  { "mask", NS_DTYPE_U8, 1, { 5 } },
  { "q8", NS_DTYPE_F8_E4M3, 1, { 4 } },
  { "emoji \xf0\x9f\x98\x80 \"quoted\"", NS_DTYPE_I32, 1, { 2 } },
};

static gsize
spec_bytes (const Spec *s)
{
  gsize n = ns_dtype_size (s->dtype);
  for (int d = 0; d < s->n_dims; d++)
    n *= (gsize) s->shape[d];
  return n;
}

static guint8 *
random_bytes (gsize n)
{
  guint8 *b = g_malloc (MAX (n, 1));
  for (gsize i = 0; i < n; i++)
    b[i] = (guint8) g_test_rand_int ();
  return b;
}

static NsSafetensorsWriter *
writer_from_specs (const Spec *specs, guint n, GPtrArray *datas)
{
  NsSafetensorsWriter *w = ns_safetensors_writer_new ();
  gsize total = 0;
  for (guint i = 0; i < n; i++)
    {
      guint8 *data = random_bytes (spec_bytes (&specs[i]));
      g_ptr_array_add (datas, data);
      ns_safetensors_writer_add (w, specs[i].name, specs[i].dtype, specs[i].n_dims, specs[i].shape, data);
      total += spec_bytes (&specs[i]);
    }
  g_assert_cmpuint (ns_safetensors_writer_data_size (w), ==, total);
  return w;
}

static void
test_round_trip (void)
{
  g_autofree char *dir = ns_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "rt.safetensors", NULL);
  g_autoptr (GPtrArray) datas = g_ptr_array_new_with_free_func (g_free);
  guint n = G_N_ELEMENTS (round_trip_specs);
  g_autoptr (NsSafetensorsWriter) w = writer_from_specs (round_trip_specs, n, datas);
  ns_safetensors_writer_set_metadata (w, "format", "pt");
  g_autoptr (GError) error = NULL;
  g_assert_true (ns_safetensors_writer_save (w, path, &error));
  g_assert_no_error (error);

  g_autoptr (NsTensorStore) store = ns_tensor_store_new ();
  g_assert_true (ns_safetensors_load_file (store, path, &error));
  g_assert_cmpuint (ns_tensor_store_len (store), ==, n);
  for (guint i = 0; i < n; i++)
    {
      const Spec *s = &round_trip_specs[i];
      const NsTensorView *t = ns_tensor_store_get (store, i);   /* file order = order added */
      g_assert_cmpstr (t->name, ==, s->name);
      NsTensorView expect = { (char *) s->name, s->dtype, s->n_dims, { s->shape[0], s->shape[1], s->shape[2] },
                              g_ptr_array_index (datas, i), spec_bytes (s), NULL };
      ns_files_test_assert_same_tensor (t, &expect);
    }

  /* the header is padded to 8 bytes and carries the metadata */
  g_autofree char *bytes = NULL;
  gsize size;
  g_assert_true (g_file_get_contents (path, &bytes, &size, NULL));
  guint64 header_len;
  memcpy (&header_len, bytes, 8);
  g_assert_cmpuint (header_len % 8, ==, 0);
  g_autoptr (JsonParser) p = json_parser_new ();
  g_assert_true (json_parser_load_from_data (p, bytes + 8, (gssize) header_len, NULL));
  JsonObject *meta = json_object_get_object_member (json_node_get_object (json_parser_get_root (p)),
                                                    "__metadata__");
  g_assert_cmpstr (json_object_get_string_member (meta, "format"), ==, "pt");
  ns_test_rmtree (dir);
}

static void
test_writer_refuses_duplicates (void)
{
  g_autofree char *dir = ns_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "dup.safetensors", NULL);
  g_autoptr (NsSafetensorsWriter) w = ns_safetensors_writer_new ();
  const float v = 1;
  const int64_t one = 1;
  ns_safetensors_writer_add (w, "x", NS_DTYPE_F32, 1, &one, &v);
  ns_safetensors_writer_add (w, "x", NS_DTYPE_F32, 1, &one, &v);
  g_autoptr (GError) error = NULL;
  g_assert_false (ns_safetensors_writer_save (w, path, &error));
  ns_files_test_assert_error (error, "'x'", NULL);
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
  ns_test_rmtree (dir);
}

/* ---- damaged files ---- */

/* A safetensors image: 8-byte length, `header`, `data_len` data bytes. */
static GBytes *
image (const char *header, gsize data_len)
{
  gsize n = strlen (header);
  guint8 *b = g_malloc0 (8 + n + data_len);
  for (int i = 0; i < 8; i++)
    b[i] = (guint8) ((guint64) n >> (8 * i));
  memcpy (b + 8, header, n);
  return g_bytes_new_take (b, 8 + n + data_len);
}

static void
assert_refused (GBytes *img, const char *label, const char *mention1, const char *mention2)
{
  g_autoptr (NsTensorStore) store = ns_tensor_store_new ();
  g_autoptr (GError) error = NULL;
  gsize size;
  const guint8 *data = g_bytes_get_data (img, &size);
  g_assert_false (ns_safetensors_parse (store, data, size, label, &error));
  g_assert_true (error->domain == NS_ERROR);
  ns_files_test_assert_error (error, label, mention1, mention2, NULL);
  g_assert_cmpuint (ns_tensor_store_len (store), ==, 0);
}

static void
test_truncated (void)
{
  g_autoptr (GBytes) img = image ("{\"__metadata__\":{\"a\":\"b\"},"
                                  "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                                  "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[16,22]}}", 22);
  gsize size;
  const guint8 *data = g_bytes_get_data (img, &size);
  g_autoptr (NsTensorStore) ok = ns_tensor_store_new ();
  g_assert_true (ns_safetensors_parse (ok, data, size, "small.safetensors", NULL));
  g_assert_cmpuint (ns_tensor_store_len (ok), ==, 2);
  /* a copy of exactly each length, so a read past it is caught by ASan/valgrind */
  for (gsize len = 0; len < size; len++)
    {
      g_autoptr (GBytes) cut = g_bytes_new (data, len);
      assert_refused (cut, "small.safetensors", NULL, NULL);
    }
  /* and through a real file: the message names its path */
  g_autofree char *dir = ns_test_tmpdir ();
  g_autofree char *path = ns_files_test_write (dir, "cut.safetensors", data, size - 3);
  g_autoptr (NsTensorStore) store = ns_tensor_store_new ();
  g_autoptr (GError) error = NULL;
  g_assert_false (ns_safetensors_load_file (store, path, &error));
  ns_files_test_assert_error (error, path, "'b'", "data_offsets", NULL);
  ns_test_rmtree (dir);
}

/* Random byte flips in a small file: each parse succeeds or fails with a
 * message naming the file; none crashes or reads outside the image. */
static void
test_corrupted (void)
{
  g_autoptr (GBytes) img = image ("{\"__metadata__\":{\"format\":\"pt\"},"
                                  "\"a\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
                                  "\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[12,20]}}", 20);
  gsize size;
  const guint8 *orig = g_bytes_get_data (img, &size);
  guint refused = 0;
  for (int iter = 0; iter < 3000; iter++)
    {
      g_autofree guint8 *data = g_memdup2 (orig, size);
      /* printable ASCII most of the time, so the JSON stays UTF-8 */
      for (int k = 0; k < 1 + iter % 3; k++)
        data[g_test_rand_int_range (0, (gint32) size)] =
          (guint8) (iter % 4 ? g_test_rand_int_range (0x20, 0x7f) : g_test_rand_int ());
      g_autoptr (NsTensorStore) store = ns_tensor_store_new ();
      g_autoptr (GError) error = NULL;
      if (!ns_safetensors_parse (store, data, size, "flip.safetensors", &error))
        {
          ns_files_test_assert_error (error, "flip.safetensors", NULL);
          refused++;
        }
    }
  g_test_message ("%u of 3000 corrupted files refused", refused);
}

static void
test_bad_headers (void)
{
  static const struct {
    const char *header;
    gsize data_len;
    const char *mention1, *mention2;
  } cases[] = {
    { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "JSON", NULL },
    { "[1,2]", 0, "not a JSON object", NULL },
    { "", 0, "not valid JSON", "the end of the data" },
    { "  ", 0, "not valid JSON", "the end of the data" },
    { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "'a'", "data_offsets" },
    { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "'a'", "reversed" },
    { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "'b'", "overlap" },
    { "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "'a'", "needs 12 bytes" },
    { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "'a'", "twice" },
    { "{\"a\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'a'", "'Q4'" },
    { "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "'a'", "shape[0]" },
    { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, "'a'", "shape[0]" },
    { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,\"4\"]}}", 4, "'a'", "data_offsets" },
    { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "'a'", "data_offsets" },
    { "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'a'", "dtype" },
    { "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "'a'", "shape" },
    { "{\"a\":[1]}", 0, "'a'", "not a JSON object" },
    { "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
      "\"data_offsets\":[0,4]}}", 4, "'a'", "too large" },
    { "{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", 4, "64-bit range", NULL },
    { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "'a'", "dimensions" },
    { "{\"__metadata__\":{\"k\":1}}", 0, "__metadata__", "'k'" },
    { "{\"__metadata__\":[]}", 0, "__metadata__", NULL },
    { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}\xff", 4, "0xff", NULL },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GBytes) img = image (cases[i].header, cases[i].data_len);
      assert_refused (img, "bad.safetensors", cases[i].mention1, cases[i].mention2);
    }
  /* a nesting bomb: json-glib would recurse once per level */
  g_autoptr (GString) deep = g_string_new ("{\"a\":");
  for (int i = 0; i < 200000; i++)
    g_string_append_c (deep, '[');
  for (int i = 0; i < 200000; i++)
    g_string_append_c (deep, ']');
  g_string_append_c (deep, '}');
  g_autoptr (GBytes) deep_img = image (deep->str, 0);
  assert_refused (deep_img, "deep.safetensors", "nests", NULL);
  /* a header length larger than the file */
  const guint8 long_header[] = { 0xe8, 0x03, 0, 0, 0, 0, 0, 0, '{', '}' };   /* 1000 */
  g_autoptr (GBytes) img = g_bytes_new (long_header, sizeof long_header);
  assert_refused (img, "long.safetensors", "header length", NULL);
}

/* Empty tensors take no bytes: they may sit anywhere, even inside another. */
static void
test_empty_tensors (void)
{
  g_autoptr (GBytes) img = image ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                  "\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
                                  "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[8,12]}}", 12);
  g_autoptr (NsTensorStore) store = ns_tensor_store_new ();
  g_autoptr (GError) error = NULL;
  gsize size;
  const guint8 *data = g_bytes_get_data (img, &size);
  g_assert_true (ns_safetensors_parse (store, data, size, "e.safetensors", &error));
  g_assert_no_error (error);
  g_assert_cmpint (ns_tensor_store_find (store, "e")->n_bytes, ==, 0);
  g_assert_cmpint (ns_tensor_store_find (store, "s")->n_dims, ==, 0);
  g_assert_cmpint (ns_tensor_store_n_elements (store), ==, 3);
}

/* ---- index ---- */

/* Writes shards a.safetensors {x, y} and b.safetensors {z} into `dir`. */
static void
write_shards (const char *dir)
{
  const float v[2] = { 1, 2 };
  const int64_t shape = 2;
  const char *names[][2] = { { "x", "y" }, { "z", NULL } };
  const char *files[] = { "a.safetensors", "b.safetensors" };
  for (int f = 0; f < 2; f++)
    {
      g_autoptr (NsSafetensorsWriter) w = ns_safetensors_writer_new ();
      for (int i = 0; i < 2 && names[f][i] != NULL; i++)
        ns_safetensors_writer_add (w, names[f][i], NS_DTYPE_F32, 1, &shape, v);
      g_autofree char *path = g_build_filename (dir, files[f], NULL);
      g_assert_true (ns_safetensors_writer_save (w, path, NULL));
    }
}

static char *
write_index (const char *dir, const char *weight_map)
{
  g_autofree char *text = g_strdup_printf ("{\"metadata\":{\"total_size\":24},\"weight_map\":%s}", weight_map);
  return ns_files_test_write (dir, "model.safetensors.index.json", text, strlen (text));
}

static void
test_index (void)
{
  g_autofree char *dir = ns_test_tmpdir ();
  write_shards (dir);
  static const struct {
    const char *map;
    const char *mention1, *mention2;
  } cases[] = {
    { "{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"b.safetensors\"}", NULL, NULL },
    { "{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"c.safetensors\"}", "'c.safetensors'", "does not exist" },
    { "{\"x\":\"a.safetensors\",\"y\":\"b.safetensors\",\"z\":\"b.safetensors\"}", "'y'", "'b.safetensors'" },
    { "{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"b.safetensors\",\"w\":\"b.safetensors\"}",
      "'w'", "does not contain" },
    { "{\"x\":\"a.safetensors\",\"z\":\"b.safetensors\"}", "'y'", "does not list" },
    { "{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"../b.safetensors\"}", "'z'", "file name" },
    { "{\"x\":\"a.safetensors\",\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"b.safetensors\"}", "'x'", "twice" },
    { "{}", "no tensors", NULL },
    { "[]", "weight_map", NULL },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *index = write_index (dir, cases[i].map);
      g_autoptr (GError) error = NULL;
      g_autoptr (NsTensorStore) store = ns_safetensors_load_dir (dir, &error);
      if (cases[i].mention1 == NULL)
        {
          g_assert_no_error (error);
          g_assert_cmpuint (ns_tensor_store_len (store), ==, 3);
          g_assert_true (g_str_has_suffix (ns_tensor_store_find (store, "z")->file, "b.safetensors"));
          continue;
        }
      g_assert_null (store);
      ns_files_test_assert_error (error, index, cases[i].mention1, cases[i].mention2, NULL);
    }
  ns_test_rmtree (dir);
}

static void
test_parse_index (void)
{
  const char *text = "{\"weight_map\":{\"p\":\"s2\",\"q\":\"s1\",\"r\":\"s2\"}}";
  g_autoptr (GHashTable) map = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) shards = ns_safetensors_parse_index (text, strlen (text), "i.json", &map, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (shards->len, ==, 2);
  g_assert_cmpstr (g_ptr_array_index (shards, 0), ==, "s2");
  g_assert_cmpstr (g_ptr_array_index (shards, 1), ==, "s1");
  g_assert_cmpstr (g_hash_table_lookup (map, "q"), ==, "s1");
  const char *bad = "{\"weight_map\":{\"p\":3}}";
  g_assert_null (ns_safetensors_parse_index (bad, strlen (bad), "i.json", NULL, &error));
  ns_files_test_assert_error (error, "i.json", "'p'", NULL);
}

static void
test_dir_without_index (void)
{
  g_autofree char *dir = ns_test_tmpdir ();
  g_autoptr (GError) error = NULL;
  g_assert_null (ns_safetensors_load_dir (dir, &error));
  ns_files_test_assert_error (error, dir, "no", NULL);
  g_clear_error (&error);
  write_shards (dir);
  g_autoptr (NsTensorStore) store = ns_safetensors_load_dir (dir, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (ns_tensor_store_len (store), ==, 3);
  g_autofree char *missing = g_build_filename (dir, "nope", NULL);
  g_assert_null (ns_safetensors_load_dir (missing, &error));
  g_assert_error (error, NS_ERROR, NS_ERROR_FILE);
  ns_test_rmtree (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/files/safetensors/golden-models", test_golden_models);
  g_test_add_func ("/files/safetensors/round-trip", test_round_trip);
  g_test_add_func ("/files/safetensors/writer-duplicates", test_writer_refuses_duplicates);
  g_test_add_func ("/files/safetensors/truncated", test_truncated);
  g_test_add_func ("/files/safetensors/bad-headers", test_bad_headers);
  g_test_add_func ("/files/safetensors/corrupted", test_corrupted);
  g_test_add_func ("/files/safetensors/empty-tensors", test_empty_tensors);
  g_test_add_func ("/files/safetensors/index", test_index);
  g_test_add_func ("/files/safetensors/parse-index", test_parse_index);
  g_test_add_func ("/files/safetensors/dir-without-index", test_dir_without_index);
  return g_test_run ();
}
