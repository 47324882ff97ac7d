/* test-torch-checkpoint.c — torch.save zip archives: the golden VAE
 * checkpoints against their safetensors twins, the writer's round trip, and
 * hostile or damaged files (code-executing globals, compressed members,
 * truncation, corruption, nesting bombs). */
#include <string.h>

#include "nextstep.h"
#include "files/safetensors.h"
#include "files/torch-checkpoint.h"
#include "files/zip.h"
#include "test-util.h"
#include "files-test-util.h"

/* ---- golden ---- */

static void
check_golden_case (const char *vae_dir)
{
  g_autofree char *pt = g_build_filename (vae_dir, "checkpoint.pt", NULL);
  g_autofree char *twin_path = g_build_filename (vae_dir, "checkpoint-twin.safetensors", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (NsTensorStore) ckpt = ns_torch_checkpoint_load (pt, &error);
  g_assert_no_error (error);
  g_autoptr (NsTensorStore) twin = ns_test_load_safetensors (twin_path);
  g_test_message ("%s: %u tensors", pt, ns_tensor_store_len (ckpt));
  g_assert_cmpuint (ns_tensor_store_len (ckpt), ==, ns_tensor_store_len (twin));
  g_assert_cmpuint (ns_tensor_store_len (ckpt), >, 0);
  for (guint i = 0; i < ns_tensor_store_len (twin); i++)
    {
      const NsTensorView *want = ns_tensor_store_get (twin, i);
      const NsTensorView *got = ns_tensor_store_find (ckpt, want->name);
      if (got == NULL)
        g_error ("%s lacks tensor '%s'", pt, want->name);
      ns_files_test_assert_same_tensor (got, want);
      g_assert_cmpstr (got->file, ==, pt);
      if (got->n_bytes > 0)
        g_assert_true (ns_files_test_is_mapped_from (got->data, "checkpoint.pt"));
    }
}

static void
test_golden (void)
{
  const char *golden = ns_test_golden_dir ();
  if (golden == NULL)
    {
      g_test_skip ("no golden data (NS_GOLDEN_DIR)");
      return;
    }
  g_autoptr (GDir) dir = g_dir_open (golden, 0, NULL);
  guint n = 0;
  for (const char *name; (name = g_dir_read_name (dir)) != NULL;)
    {
      g_autofree char *vae = g_build_filename (golden, name, "vae", NULL);
      g_autofree char *pt = g_build_filename (vae, "checkpoint.pt", NULL);
      if (!g_file_test (pt, G_FILE_TEST_IS_REGULAR))
        continue;
      check_golden_case (vae);
      n++;
    }
  g_assert_cmpuint (n, >, 0);
}

/* ---- round trip ---- */

typedef struct {
  const char *name;
  NsDType dtype;
  int n_dims;
  int64_t shape[3];
} Spec;

static const Spec specs[] = {
  { "conv.weight", NS_DTYPE_BF16, 3, { 4, 3, 2 } },
  { "conv.bias", NS_DTYPE_F32, 1, { 4 } },
  { "norm.weight", NS_DTYPE_F16, 2, { 300, 2 } },
  { "step", NS_DTYPE_I64, 0, { 0 } },
  { "empty", NS_DTYPE_F32, 2, { 0, 5 } },
  { "big", NS_DTYPE_F32, 1, { 20000 } },
};

/* A store of random tensors per `specs`; the data lives in the store. */
static NsTensorStore *
random_store (void)
{
  NsTensorStore *store = ns_tensor_store_new ();
  for (guint i = 0; i < G_N_ELEMENTS (specs); i++)
    {
      NsTensorView v = { (char *) specs[i].name, specs[i].dtype, specs[i].n_dims,
                         { specs[i].shape[0], specs[i].shape[1], specs[i].shape[2] }, NULL, 0, NULL };
      v.n_bytes = (size_t) ns_tensor_n_elements (&v) * ns_dtype_size (v.dtype);
      guint8 *data = g_malloc (MAX (v.n_bytes, 1));
      for (size_t b = 0; b < v.n_bytes; b++)
        data[b] = (guint8) g_test_rand_int ();
      ns_tensor_store_keep (store, data, g_free);
      v.data = data;
      g_assert_true (ns_tensor_store_add (store, &v, NULL));
    }
  return store;
}

static void
assert_same_store (const NsTensorStore *got, const NsTensorStore *want)
{
  g_assert_cmpuint (ns_tensor_store_len (got), ==, ns_tensor_store_len (want));
  for (guint i = 0; i < ns_tensor_store_len (want); i++)
    {
      const NsTensorView *w = ns_tensor_store_get (want, i);
      g_assert_cmpstr (ns_tensor_store_get (got, i)->name, ==, w->name);
      ns_files_test_assert_same_tensor (ns_tensor_store_get (got, i), w);
    }
}

static GBytes *
saved_checkpoint (const char *dir, char **path_out)
{
  g_autoptr (NsTensorStore) store = random_store ();
  char *path = g_build_filename (dir, "ckpt.pt", NULL);
  g_autoptr (GError) error = NULL;
  g_assert_true (ns_torch_checkpoint_save (store, "archive", path, &error));
  g_assert_no_error (error);
  char *bytes;
  gsize size;
  g_assert_true (g_file_get_contents (path, &bytes, &size, NULL));
  if (path_out != NULL)
    *path_out = path;
  else
    g_free (path);
  return g_bytes_new_take (bytes, size);
}

static void
test_round_trip (void)
{
  g_autofree char *dir = ns_test_tmpdir ();
  g_autoptr (NsTensorStore) want = random_store ();
  g_autofree char *path = g_build_filename (dir, "rt.pt", NULL);
  g_autoptr (GError) error = NULL;
  g_assert_true (ns_torch_checkpoint_save (want, "rt", path, &error));
  g_autoptr (NsTensorStore) got = ns_torch_checkpoint_load (path, &error);
  g_assert_no_error (error);
  assert_same_store (got, want);

  /* the layout torch expects: 64-byte aligned data, version 3, little-endian */
  g_autoptr (GMappedFile) map = g_mapped_file_new (path, FALSE, NULL);
  const guint8 *data = (const guint8 *) g_mapped_file_get_contents (map);
  g_autoptr (GHashTable) members = ns_zip_read (data, g_mapped_file_get_length (map), path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_hash_table_size (members), ==, G_N_ELEMENTS (specs) + 3);
  GHashTableIter it;
  NsZipMember *m;
  g_hash_table_iter_init (&it, members);
  while (g_hash_table_iter_next (&it, NULL, (gpointer *) &m))
    g_assert_cmpuint (m->offset % 64, ==, 0);
  m = g_hash_table_lookup (members, "rt/version");
  g_assert_cmpmem (data + m->offset, m->size, "3\n", 2);
  m = g_hash_table_lookup (members, "rt/byteorder");
  g_assert_cmpmem (data + m->offset, m->size, "little", 6);
  g_assert_nonnull (g_hash_table_lookup (members, "rt/data.pkl"));
  ns_test_rmtree (dir);
}

static void
test_save_refuses (void)
{
  g_autofree char *dir = ns_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "x.pt", NULL);
  g_autoptr (NsTensorStore) store = ns_tensor_store_new ();
  const guint8 q[2] = { 0x38, 0x40 };
  NsTensorView v = { "q", NS_DTYPE_F8_E4M3, 1, { 2 }, q, 2, NULL };
  g_assert_true (ns_tensor_store_add (store, &v, NULL));
  g_autoptr (GError) error = NULL;
  g_assert_false (ns_torch_checkpoint_save (store, "x", path, &error));
  ns_files_test_assert_error (error, "'q'", "F8_E4M3", NULL);
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
  g_clear_error (&error);
  g_assert_false (ns_torch_checkpoint_save (store, "a/b", path, &error));
  ns_files_test_assert_error (error, "'a/b'", NULL);
  ns_test_rmtree (dir);
}

/* ---- hand-made pickles ---- */

static void
op (GByteArray *b, guint8 code)
{
  g_byte_array_append (b, &code, 1);
}

static void
put_str (GByteArray *b, const char *s)
{
  guint8 n = (guint8) strlen (s);
  op (b, 0x8c);                         /* SHORT_BINUNICODE */
  op (b, n);
  g_byte_array_append (b, (const guint8 *) s, n);
}

static void
put_global (GByteArray *b, const char *module, const char *name)
{
  g_autofree char *text = g_strdup_printf ("c%s\n%s\n", module, name);
  g_byte_array_append (b, (const guint8 *) text, (guint) strlen (text));
}

static void
put_small_int (GByteArray *b, guint8 v)
{
  op (b, 'K');
  op (b, v);
}

static void
put_tuple (GByteArray *b, int n, const guint8 *v)
{
  op (b, '(');
  for (int i = 0; i < n; i++)
    put_small_int (b, v[i]);
  op (b, 't');
}

/* _rebuild_tensor_v2 of FloatStorage `key` (numel elements) with the view
 * (offset, size, stride). */
static void
put_tensor (GByteArray *b, const char *key, guint8 numel, guint8 offset, int n_dims,
            const guint8 *size, const guint8 *stride)
{
  put_global (b, "torch._utils", "_rebuild_tensor_v2");
  op (b, '(');
  op (b, '(');
  put_str (b, "storage");
  put_global (b, "torch", "FloatStorage");
  put_str (b, key);
  put_str (b, "cpu");
  put_small_int (b, numel);
  op (b, 't');
  op (b, 'Q');
  put_small_int (b, offset);
  put_tuple (b, n_dims, size);
  put_tuple (b, n_dims, stride);
  op (b, 0x89);
  op (b, '}');
  op (b, 't');
  op (b, 'R');
}

static GByteArray *
pickle_start (void)
{
  GByteArray *b = g_byte_array_new ();
  op (b, 0x80);
  op (b, 2);
  return b;
}

static const float storage0[6] = { 0, 1, 2, 3, 4, 5 };

/* An archive "a/" holding data.pkl = `pkl` and data/0 = storage0. */
static GBytes *
archive (GByteArray *pkl, const char *dir)
{
  g_autofree char *path = g_build_filename (dir, "made.pt", NULL);
  NsFilesOut *out = ns_files_out_new (path, NULL);
  g_autoptr (NsZipWriter) zip = ns_zip_writer_new (out);
  g_assert_true (ns_zip_writer_add (zip, "a/data.pkl", pkl->data, pkl->len, NULL));
  g_assert_true (ns_zip_writer_add (zip, "a/data/0", storage0, sizeof storage0, NULL));
  g_assert_true (ns_zip_writer_finish (zip, NULL));
  g_assert_true (ns_files_out_commit (out, NULL));
  char *bytes;
  gsize size;
  g_assert_true (g_file_get_contents (path, &bytes, &size, NULL));
  return g_bytes_new_take (bytes, size);
}

/* Parses `pkl` inside an archive; NULL store and `error` set on refusal. */
static NsTensorStore *
parse_pickle (GByteArray *pkl, GError **error)
{
  g_autofree char *dir = ns_test_tmpdir ();
  g_autoptr (GBytes) img = archive (pkl, dir);
  ns_test_rmtree (dir);
  gsize size;
  const guint8 *data = g_bytes_get_data (img, &size);
  NsTensorStore *store = ns_tensor_store_new ();
  if (!ns_torch_checkpoint_parse (store, data, size, "made.pt", error))
    g_clear_pointer (&store, ns_tensor_store_free);
  else
    ns_tensor_store_keep (store, g_bytes_ref (img), (GDestroyNotify) g_bytes_unref);
  return store;
}

static void
assert_pickle_refused (GByteArray *pkl, const char *mention1, const char *mention2)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (NsTensorStore) store = parse_pickle (pkl, &error);
  g_assert_null (store);
  g_assert_true (error->domain == NS_ERROR);
  ns_files_test_assert_error (error, "made.pt", mention1, mention2, NULL);
}

/* {"w": transposed 2x3 view of storage0} as a plain dict, wrapped in
 * {"state_dict": …}, with _rebuild_parameter: all accepted. */
static void
test_pickle_variants (void)
{
  const guint8 size[2] = { 3, 2 }, stride[2] = { 1, 3 };
  for (int variant = 0; variant < 3; variant++)
    {
      g_autoptr (GByteArray) b = pickle_start ();
      if (variant == 1)
        {
          op (b, '}');
          put_str (b, "state_dict");
        }
      op (b, '}');
      put_str (b, "w");
      if (variant == 2)
        put_global (b, "torch._utils", "_rebuild_parameter");
      put_tensor (b, "0", 6, 0, 2, size, stride);
      if (variant == 2)
        {
          op (b, 0x88);
          op (b, '}');
          op (b, 0x87);                 /* TUPLE3 */
          op (b, 'R');
        }
      op (b, 's');
      if (variant == 1)
        op (b, 's');
      op (b, '.');
      g_autoptr (GError) error = NULL;
      g_autoptr (NsTensorStore) store = parse_pickle (b, &error);
      g_assert_no_error (error);
      const NsTensorView *w = ns_tensor_store_find (store, "w");
      g_assert_nonnull (w);
      g_assert_cmpint (w->shape[0], ==, 3);
      g_assert_cmpint (w->shape[1], ==, 2);
      const float transposed[6] = { 0, 3, 1, 4, 2, 5 };
      g_assert_cmpmem (w->data, w->n_bytes, transposed, sizeof transposed);
    }
}

static void
test_malicious_globals (void)
{
  /* GLOBAL 'os system' ('echo pwned',) REDUCE */
  g_autoptr (GByteArray) os = pickle_start ();
  put_global (os, "os", "system");
  put_str (os, "echo pwned");
  op (os, 0x85);
  op (os, 'R');
  op (os, '.');
  assert_pickle_refused (os, "'os.system'", "nothing was executed");

  g_autoptr (GByteArray) posix = pickle_start ();
  put_global (posix, "posix", "system");
  op (posix, '.');
  assert_pickle_refused (posix, "'posix.system'", NULL);

  /* STACK_GLOBAL 'builtins' 'eval' */
  g_autoptr (GByteArray) eval = g_byte_array_new ();
  op (eval, 0x80);
  op (eval, 4);
  put_str (eval, "builtins");
  put_str (eval, "eval");
  op (eval, 0x93);
  put_str (eval, "__import__('os').system('echo pwned')");
  op (eval, 0x85);
  op (eval, 'R');
  op (eval, '.');
  assert_pickle_refused (eval, "'builtins.eval'", NULL);

  /* INST and OBJ would call anything: refused by opcode */
  g_autoptr (GByteArray) inst = pickle_start ();
  g_byte_array_append (inst, (const guint8 *) "(ios\nsystem\n.", 13);
  assert_pickle_refused (inst, "INST", NULL);
}

static void
test_bad_pickles (void)
{
  const guint8 size[1] = { 4 }, stride[1] = { 1 }, big[1] = { 7 };
  static const struct {
    const char *what;
    const char *mention;
  } cases[] = {
    { "view past storage", "past the end of storage '0'" },
    { "missing storage", "'7'" },
    { "wrong numel", "bytes" },
    { "list top", "list" },
    { "non-tensor value", "'n'" },
    { "BUILD on tensor", "BUILD" },
    { "no STOP", "STOP" },
    { "SETITEM on empty stack", "needs 2 items" },
    { "unknown memo", "memo" },
    { "protocol 9", "protocol 9" },
    { "expanded view", "expanded" },
  };
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      g_autoptr (GByteArray) b = pickle_start ();
      switch (c)
        {
        case 0: op (b, '}'); put_str (b, "w"); put_tensor (b, "0", 6, 3, 1, size, stride); op (b, 's'); break;
        case 1: op (b, '}'); put_str (b, "w"); put_tensor (b, "7", 6, 0, 1, size, stride); op (b, 's'); break;
        case 2: op (b, '}'); put_str (b, "w"); put_tensor (b, "0", 7, 0, 1, big, stride); op (b, 's'); break;
        case 3: op (b, ']'); break;
        case 4: op (b, '}'); put_str (b, "n"); op (b, 'N'); op (b, 's'); break;
        case 5: put_tensor (b, "0", 6, 0, 1, size, stride); op (b, '}'); op (b, 'b'); break;
        case 6: op (b, '}'); break;
        case 7: op (b, 's'); break;
        case 8: op (b, 'h'); op (b, 9); break;
        case 9: b->data[1] = 9; break;
        case 10: op (b, '}'); put_str (b, "w"); put_tensor (b, "0", 6, 0, 1, (const guint8[]) { 200 }, (const guint8[]) { 0 }); op (b, 's'); break;
        }
      if (c != 6)
        op (b, '.');
      g_test_message ("case: %s", cases[c].what);
      assert_pickle_refused (b, cases[c].mention, NULL);
    }
}

/* Nesting and growth bombs end in an error, without deep recursion, leaks
 * or unbounded memory. */
static void
test_bombs (void)
{
  g_autoptr (GByteArray) marks = pickle_start ();
  for (int i = 0; i < 100000; i++)
    op (marks, '(');
  op (marks, '.');
  assert_pickle_refused (marks, "MARK", NULL);

  g_autoptr (GByteArray) tuples = pickle_start ();
  op (tuples, ')');
  for (int i = 0; i < 1000000; i++)
    op (tuples, 0x85);                  /* TUPLE1: one level deeper each byte */
  op (tuples, '.');
  assert_pickle_refused (tuples, "tuple", NULL);

  g_autoptr (GByteArray) cycle = pickle_start ();
  static const guint8 self_refs[] = "]q\x00" "h\x00" "a}q\x01" "h\x01" "h\x01" "s.";   /* l.append(l); d[d] = d */
  g_byte_array_append (cycle, self_refs, sizeof self_refs - 1);
  assert_pickle_refused (cycle, "STOP", NULL);

  g_autoptr (GByteArray) stack = pickle_start ();
  for (int i = 0; i < (1 << 20) + 10; i++)
    op (stack, 'N');
  op (stack, '.');
  assert_pickle_refused (stack, "stack", NULL);
}

/* ---- damaged archives ---- */

static void
assert_parse_refused (const guint8 *data, gsize size, const char *mention)
{
  g_autoptr (NsTensorStore) store = ns_tensor_store_new ();
  g_autoptr (GError) error = NULL;
  g_assert_false (ns_torch_checkpoint_parse (store, data, size, "bad.pt", &error));
  ns_files_test_assert_error (error, "bad.pt", mention, NULL);
  g_assert_cmpuint (ns_tensor_store_len (store), ==, 0);
}

static void
test_compressed_member (void)
{
  g_autofree char *dir = ns_test_tmpdir ();
  g_autoptr (GBytes) img = saved_checkpoint (dir, NULL);
  gsize size;
  const guint8 *saved = g_bytes_get_data (img, &size);
  guint8 *data = g_memdup2 (saved, size);
  /* the writer's classic end record gives the directory offset; the first
   * central header there (data.pkl's) is marked deflated */
  guint64 cd_offset = (guint64) data[size - 6] | (guint64) data[size - 5] << 8
                      | (guint64) data[size - 4] << 16 | (guint64) data[size - 3] << 24;
  g_assert_cmpmem (data + cd_offset, 4, "PK\x01\x02", 4);
  data[cd_offset + 10] = 8;
  assert_parse_refused (data, size, "compressed");
  g_free (data);
  ns_test_rmtree (dir);
}

static void
test_big_endian (void)
{
  g_autofree char *dir = ns_test_tmpdir ();
  g_autoptr (GBytes) img = saved_checkpoint (dir, NULL);
  gsize size;
  const guint8 *saved = g_bytes_get_data (img, &size);
  guint8 *data = g_memdup2 (saved, size);
  guint8 *little = memmem (data, size, "little", 6);
  g_assert_nonnull (little);
  memcpy (little, "bigxxx", 6);
  assert_parse_refused (data, size, "big-endian");
  g_free (data);
  ns_test_rmtree (dir);
}

static void
test_truncated (void)
{
  g_autofree char *dir = ns_test_tmpdir ();
  g_autofree char *path = NULL;
  g_autoptr (GBytes) img = saved_checkpoint (dir, &path);
  gsize size;
  const guint8 *data = g_bytes_get_data (img, &size);
  /* every length near both ends and a spread in between, each an exact-size
   * copy so any read past it is caught under ASan or valgrind */
  for (gsize len = 0; len < size; len += (len < 1024 || len > size - 2048) ? 1 : 499)
    {
      g_autofree guint8 *cut = g_memdup2 (data, len);
      assert_parse_refused (cut, len, NULL);
    }
  g_autofree char *cut_path = ns_files_test_write (dir, "cut.pt", data, size / 2);
  g_autoptr (GError) error = NULL;
  g_assert_null (ns_torch_checkpoint_load (cut_path, &error));
  ns_files_test_assert_error (error, cut_path, NULL);
  ns_test_rmtree (dir);
}

/* Random byte flips in data.pkl and the zip records: each parse either
 * succeeds or fails with a message; it never crashes. */
static void
test_corrupted (void)
{
  g_autofree char *dir = ns_test_tmpdir ();
  g_autoptr (GBytes) img = saved_checkpoint (dir, NULL);
  gsize size;
  const guint8 *orig = g_bytes_get_data (img, &size);
  g_autoptr (GHashTable) members = ns_zip_read (orig, size, "ckpt", NULL);
  const NsZipMember *pkl = g_hash_table_lookup (members, "archive/data.pkl");
  guint refused = 0;
  for (int iter = 0; iter < 3000; iter++)
    {
      g_autofree guint8 *data = g_memdup2 (orig, size);
      /* half the time in data.pkl, else in the directory at the end */
      gsize lo = iter % 2 ? pkl->offset : size - MIN (size, 1024);
      gsize span = iter % 2 ? pkl->size : MIN (size, 1024);
      for (int k = 0; k < 1 + iter % 3; k++)
        data[lo + (gsize) g_test_rand_int_range (0, (gint32) span)] = (guint8) g_test_rand_int ();
      g_autoptr (NsTensorStore) store = ns_tensor_store_new ();
      g_autoptr (GError) error = NULL;
      if (!ns_torch_checkpoint_parse (store, data, size, "flip.pt", &error))
        {
          ns_files_test_assert_error (error, "flip.pt", NULL);
          refused++;
        }
    }
  g_test_message ("%u of 3000 corrupted files refused", refused);
  ns_test_rmtree (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/files/torch-checkpoint/golden", test_golden);
  g_test_add_func ("/files/torch-checkpoint/round-trip", test_round_trip);
  g_test_add_func ("/files/torch-checkpoint/save-refuses", test_save_refuses);
  g_test_add_func ("/files/torch-checkpoint/pickle-variants", test_pickle_variants);
  g_test_add_func ("/files/torch-checkpoint/malicious-globals", test_malicious_globals);
  g_test_add_func ("/files/torch-checkpoint/bad-pickles", test_bad_pickles);
  g_test_add_func ("/files/torch-checkpoint/bombs", test_bombs);
  g_test_add_func ("/files/torch-checkpoint/compressed-member", test_compressed_member);
  g_test_add_func ("/files/torch-checkpoint/big-endian", test_big_endian);
  g_test_add_func ("/files/torch-checkpoint/truncated", test_truncated);
  g_test_add_func ("/files/torch-checkpoint/corrupted", test_corrupted);
  return g_test_run ();
}
