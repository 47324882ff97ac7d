/* files/pickle.c — see pickle.h.
 *
 * The unpickler is a small stack machine over an allow-list of opcodes.
 * Every value lives in one arena freed in a flat loop, so shared or cyclic
 * references (memo gets, a list appended to itself) and deep nesting never
 * recurse or leak. Stack, marks, memo and object count are bounded so a
 * hostile file cannot grow memory beyond a fixed budget. */
#include <string.h>

#include "files/file-util.h"
#include "files/pickle.h"

#define STACK_MAX   (1u << 20)
#define MARKS_MAX   256u          /* a state_dict nests a few levels */
#define MEMO_MAX    (1u << 21)     /* torch memoizes ~10 objects per tensor */
#define VALUES_MAX  (1u << 21)     /* ~15 objects per tensor: 100k+ tensors */
#define GLOBAL_MAX  256u          /* longest GLOBAL module or name line */

/* ---- torch storage types ---- */

static const struct {
  const char *storage;
  NsDType dtype;
} storage_types[] = {
  { "FloatStorage", NS_DTYPE_F32 },
  { "HalfStorage", NS_DTYPE_F16 },
  { "BFloat16Storage", NS_DTYPE_BF16 },
  { "DoubleStorage", NS_DTYPE_F64 },
  { "CharStorage", NS_DTYPE_I8 },
  { "ByteStorage", NS_DTYPE_U8 },
  { "IntStorage", NS_DTYPE_I32 },
  { "LongStorage", NS_DTYPE_I64 },
};

static const char *
storage_name (NsDType dtype)
{
  for (guint i = 0; i < G_N_ELEMENTS (storage_types); i++)
    if (storage_types[i].dtype == dtype)
      return storage_types[i].storage;
  return NULL;
}

/* ---- values ---- */

typedef enum {
  V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_TUPLE, V_LIST, V_DICT,
  V_GLOBAL, V_STORAGE, V_TENSOR,
} Kind;

static const char *const kind_names[] = {
  "None", "bool", "int", "float", "str", "tuple", "list", "dict",
  "global", "storage", "tensor",
};

typedef enum {
  GLOBAL_ORDERED_DICT, GLOBAL_REBUILD_TENSOR, GLOBAL_REBUILD_PARAMETER, GLOBAL_STORAGE_TYPE,
} GlobalKind;

typedef struct {
  Kind kind;
  union {
    gint64 i;                     /* bool, int */
    double f;
    char *s;
    GPtrArray *items;             /* tuple, list; dict as key, value, key, … */
    struct { GlobalKind which; NsDType dtype; } global;
    struct { NsDType dtype; const guint8 *data; guint64 numel; char *key; } storage;
    NsTensorView *tensor;         /* name unset; data in a storage or a copy */
  };
} Value;

typedef struct {
  const guint8 *start, *p, *end;
  const char *label;
  NsPickleStorageFunc storage;
  gpointer storage_data;
  GPtrArray *arena;               /* every Value, owned */
  GPtrArray *stack;
  GArray *marks;                  /* stack lengths at each MARK */
  GHashTable *memo;               /* index → Value* */
  GPtrArray *copies;              /* data of non-contiguous tensors, owned */
  GError **error;
} Unpickler;

static void
value_free (gpointer p)
{
  Value *v = p;
  if (v->kind == V_STR)
    g_free (v->s);
  else if (v->kind == V_TUPLE || v->kind == V_LIST || v->kind == V_DICT)
    g_ptr_array_unref (v->items);
  else if (v->kind == V_STORAGE)
    g_free (v->storage.key);
  else if (v->kind == V_TENSOR)
    g_free (v->tensor);
  g_free (v);
}

static gboolean
fail (Unpickler *u, NsErrorCode code, const char *format, ...) G_GNUC_PRINTF (3, 4);

/* Errors name the file and the offset in data.pkl. */
static gboolean
fail (Unpickler *u, NsErrorCode code, const char *format, ...)
{
  va_list ap;
  va_start (ap, format);
  g_autofree char *what = g_strdup_vprintf (format, ap);
  va_end (ap);
  return ns_files_fail (u->error, code, "%s: data.pkl at byte %td: %s", u->label,
                        u->p - u->start, what);
}

static Value *
new_value (Unpickler *u, Kind kind)
{
  if (u->arena->len >= VALUES_MAX)
    {
      fail (u, NS_ERROR_FORMAT, "more than %u objects; this is not a tensor state_dict", VALUES_MAX);
      return NULL;
    }
  Value *v = g_new0 (Value, 1);
  v->kind = kind;
  if (kind == V_TUPLE || kind == V_LIST || kind == V_DICT)
    v->items = g_ptr_array_new ();
  g_ptr_array_add (u->arena, v);
  return v;
}

static gboolean
push (Unpickler *u, Value *v)
{
  if (v == NULL)
    return FALSE;
  if (u->stack->len >= STACK_MAX)
    return fail (u, NS_ERROR_FORMAT, "the pickle stack grows past %u entries", STACK_MAX);
  g_ptr_array_add (u->stack, v);
  return TRUE;
}

/* The stack floor: nothing below the innermost MARK may be popped. */
static guint
stack_floor (const Unpickler *u)
{
  return u->marks->len ? g_array_index (u->marks, guint, u->marks->len - 1) : 0;
}

static Value *
pop (Unpickler *u)
{
  if (u->stack->len <= stack_floor (u))
    {
      fail (u, NS_ERROR_FORMAT, "pops from an empty stack");
      return NULL;
    }
  return g_ptr_array_steal_index (u->stack, u->stack->len - 1);
}

static Value *
top (Unpickler *u)
{
  if (u->stack->len <= stack_floor (u))
    {
      fail (u, NS_ERROR_FORMAT, "uses the top of an empty stack");
      return NULL;
    }
  return g_ptr_array_index (u->stack, u->stack->len - 1);
}

static Value *
expect (Unpickler *u, Value *v, Kind kind, const char *role)
{
  if (v != NULL && v->kind != kind)
    {
      fail (u, NS_ERROR_FORMAT, "%s is a %s, expected a %s", role, kind_names[v->kind], kind_names[kind]);
      return NULL;
    }
  return v;
}

/* ---- reading the opcode stream ---- */

static const guint8 *
take (Unpickler *u, guint64 n)
{
  if (n > (guint64) (u->end - u->p))
    {
      fail (u, NS_ERROR_FORMAT, "an argument runs past the end of data.pkl (truncated?)");
      return NULL;
    }
  const guint8 *at = u->p;
  u->p += n;
  return at;
}

static gboolean
take_uint (Unpickler *u, int n_bytes, guint64 *out)
{
  const guint8 *b = take (u, (guint64) n_bytes);
  if (b == NULL)
    return FALSE;
  *out = 0;
  for (int i = n_bytes - 1; i >= 0; i--)
    *out = (*out << 8) | b[i];
  return TRUE;
}

static gboolean
push_int (Unpickler *u, Kind kind, gint64 i)
{
  Value *v = new_value (u, kind);
  if (v != NULL)
    v->i = i;
  return push (u, v);
}

/* BININT1/BININT2/BININT: unsigned 1 and 2 bytes, signed 4 bytes. */
static gboolean
op_int (Unpickler *u, int n_bytes)
{
  guint64 x;
  if (!take_uint (u, n_bytes, &x))
    return FALSE;
  return push_int (u, V_INT, n_bytes == 4 ? (gint64) (gint32) (guint32) x : (gint64) x);
}

/* LONG1: n little-endian two's complement bytes; more than 8 do not fit. */
static gboolean
op_long1 (Unpickler *u)
{
  guint64 n, x = 0;
  if (!take_uint (u, 1, &n))
    return FALSE;
  if (n > 8)
    return fail (u, NS_ERROR_FORMAT, "an integer of %u bytes is too large", (guint) n);
  if (n > 0 && !take_uint (u, (int) n, &x))
    return FALSE;
  if (n > 0 && n < 8 && (x >> (8 * n - 1)) & 1u)
    x |= ~(guint64) 0 << (8 * n);     /* sign-extend */
  return push_int (u, V_INT, (gint64) x);
}

static gboolean
op_float (Unpickler *u)
{
  const guint8 *b = take (u, 8);
  if (b == NULL)
    return FALSE;
  guint64 bits = 0;
  for (int i = 0; i < 8; i++)
    bits = (bits << 8) | b[i];        /* big-endian */
  Value *v = new_value (u, V_FLOAT);
  if (v != NULL)
    memcpy (&v->f, &bits, 8);
  return push (u, v);
}

static gboolean
op_unicode (Unpickler *u, int len_bytes)
{
  guint64 n;
  if (!take_uint (u, len_bytes, &n))
    return FALSE;
  const guint8 *s = take (u, n);
  if (s == NULL)
    return FALSE;
  if (!g_utf8_validate_len ((const char *) s, (gsize) n, NULL))
    return fail (u, NS_ERROR_FORMAT, "a string is not valid UTF-8");
  Value *v = new_value (u, V_STR);
  if (v != NULL)
    v->s = g_strndup ((const char *) s, (gsize) n);
  return push (u, v);
}

/* Moves the top n stack items into a new array. */
static GPtrArray *
pop_n (Unpickler *u, guint n, const char *opcode)
{
  if (u->stack->len < stack_floor (u) + n)
    {
      fail (u, NS_ERROR_FORMAT, "%s needs %u items on the stack", opcode, n);
      return NULL;
    }
  GPtrArray *items = g_ptr_array_new ();
  for (guint i = u->stack->len - n; i < u->stack->len; i++)
    g_ptr_array_add (items, g_ptr_array_index (u->stack, i));
  g_ptr_array_set_size (u->stack, u->stack->len - n);
  return items;
}

/* Items pushed since the innermost MARK, moved out; the mark is popped. */
static GPtrArray *
pop_mark (Unpickler *u)
{
  if (u->marks->len == 0)
    {
      fail (u, NS_ERROR_FORMAT, "needs a MARK but none is open");
      return NULL;
    }
  guint floor = stack_floor (u);
  g_array_set_size (u->marks, u->marks->len - 1);
  return pop_n (u, u->stack->len - floor, "MARK");
}

/* TUPLE (items since MARK) and TUPLE1/2/3 (items given by `items`). */
static gboolean
push_tuple (Unpickler *u, GPtrArray *items)
{
  if (items == NULL)
    return FALSE;
  Value *t = new_value (u, V_TUPLE);
  if (t == NULL)
    {
      g_ptr_array_unref (items);
      return FALSE;
    }
  g_ptr_array_extend_and_steal (t->items, items);
  return push (u, t);
}

static gboolean
op_mark (Unpickler *u)
{
  if (u->marks->len >= MARKS_MAX)
    return fail (u, NS_ERROR_FORMAT, "MARKs nest deeper than %u; this is not a tensor state_dict", MARKS_MAX);
  guint at = u->stack->len;
  g_array_append_val (u->marks, at);
  return TRUE;
}

/* APPEND / APPENDS (list below) and SETITEM / SETITEMS (dict below). */
static gboolean
extend (Unpickler *u, Kind kind, GPtrArray *items)
{
  Value *target = expect (u, top (u), kind, kind == V_LIST ? "APPEND's target" : "SETITEM's target");
  if (target == NULL)
    return FALSE;
  if (kind == V_DICT && items->len % 2 != 0)
    return fail (u, NS_ERROR_FORMAT, "SETITEMS has a key without a value");
  g_ptr_array_extend (target->items, items, NULL, NULL);
  return TRUE;
}

static gboolean
op_extend_one (Unpickler *u, Kind kind)
{
  g_autoptr (GPtrArray) items = kind == V_LIST ? pop_n (u, 1, "APPEND") : pop_n (u, 2, "SETITEM");
  return items != NULL && extend (u, kind, items);
}

static gboolean
op_extend_mark (Unpickler *u, Kind kind)
{
  g_autoptr (GPtrArray) items = pop_mark (u);
  return items != NULL && extend (u, kind, items);
}

static gboolean
op_put (Unpickler *u, int n_bytes)
{
  guint64 index = g_hash_table_size (u->memo);     /* MEMOIZE: the next index */
  if (n_bytes > 0 && !take_uint (u, n_bytes, &index))
    return FALSE;
  Value *v = top (u);
  if (v == NULL)
    return FALSE;
  if (g_hash_table_size (u->memo) >= MEMO_MAX)
    return fail (u, NS_ERROR_FORMAT, "the memo grows past %u entries", MEMO_MAX);
  g_hash_table_insert (u->memo, GUINT_TO_POINTER ((guint) index), v);
  return TRUE;
}

static gboolean
op_get (Unpickler *u, int n_bytes)
{
  guint64 index;
  if (!take_uint (u, n_bytes, &index))
    return FALSE;
  Value *v = g_hash_table_lookup (u->memo, GUINT_TO_POINTER ((guint) index));
  if (v == NULL)
    return fail (u, NS_ERROR_FORMAT, "gets memo entry %" G_GUINT64_FORMAT ", which was never put", index);
  return push (u, v);
}

/* ---- globals: the allow-list ---- */

static gboolean
push_global (Unpickler *u, const char *module, const char *name)
{
  Value *v = new_value (u, V_GLOBAL);
  if (v == NULL)
    return FALSE;
  if (strcmp (module, "collections") == 0 && strcmp (name, "OrderedDict") == 0)
    v->global.which = GLOBAL_ORDERED_DICT;
  else if (strcmp (module, "torch._utils") == 0 && strcmp (name, "_rebuild_tensor_v2") == 0)
    v->global.which = GLOBAL_REBUILD_TENSOR;
  else if (strcmp (module, "torch._utils") == 0 && strcmp (name, "_rebuild_parameter") == 0)
    v->global.which = GLOBAL_REBUILD_PARAMETER;
  else
    {
      v->global.which = GLOBAL_STORAGE_TYPE;
      gboolean known = FALSE;
      for (guint i = 0; !known && strcmp (module, "torch") == 0 && i < G_N_ELEMENTS (storage_types); i++)
        if (strcmp (name, storage_types[i].storage) == 0)
          {
            v->global.dtype = storage_types[i].dtype;
            known = TRUE;
          }
      if (!known)
        {
          g_autofree char *m = g_strescape (module, NULL), *n = g_strescape (name, NULL);
          return fail (u, NS_ERROR_FORMAT,
                       "refers to the global '%s.%s', which a tensor state_dict never needs; "
                       "refusing the file (it may be malicious; nothing was executed)", m, n);
        }
    }
  return push (u, v);
}

/* GLOBAL: "module\nname\n". */
static char *
take_line (Unpickler *u)
{
  gsize avail = (gsize) MIN ((guint64) (u->end - u->p), GLOBAL_MAX + 1);
  const guint8 *nl = memchr (u->p, '\n', avail);
  if (nl == NULL)
    {
      fail (u, NS_ERROR_FORMAT, "GLOBAL has no newline-terminated name");
      return NULL;
    }
  char *line = g_strndup ((const char *) u->p, (gsize) (nl - u->p));
  u->p = nl + 1;
  return line;
}

static gboolean
op_global (Unpickler *u)
{
  g_autofree char *module = take_line (u);
  g_autofree char *name = module != NULL ? take_line (u) : NULL;
  return name != NULL && push_global (u, module, name);
}

static gboolean
op_stack_global (Unpickler *u)
{
  Value *name = expect (u, pop (u), V_STR, "STACK_GLOBAL's name");
  Value *module = name != NULL ? expect (u, pop (u), V_STR, "STACK_GLOBAL's module") : NULL;
  return module != NULL && push_global (u, module->s, name->s);
}

/* ---- persistent ids and tensors ---- */

static Value *
item (GPtrArray *items, guint i)
{
  return g_ptr_array_index (items, i);
}

/* BINPERSID ('storage', StorageType, key, location, numel). */
static gboolean
op_persid (Unpickler *u)
{
  Value *pid = expect (u, pop (u), V_TUPLE, "a persistent id");
  if (pid == NULL)
    return FALSE;
  GPtrArray *f = pid->items;
  if (f->len != 5 || item (f, 0)->kind != V_STR || strcmp (item (f, 0)->s, "storage") != 0
      || item (f, 1)->kind != V_GLOBAL || item (f, 1)->global.which != GLOBAL_STORAGE_TYPE
      || item (f, 2)->kind != V_STR || item (f, 4)->kind != V_INT || item (f, 4)->i < 0)
    return fail (u, NS_ERROR_FORMAT,
                 "a persistent id is not ('storage', torch.<Type>Storage, key, location, numel)");
  NsDType dtype = item (f, 1)->global.dtype;
  const char *key = item (f, 2)->s;
  const guint8 *data;
  gsize size;
  if (!u->storage (u->storage_data, key, &data, &size, u->error))
    return FALSE;
  guint64 bytes;
  if (!g_uint64_checked_mul (&bytes, (guint64) item (f, 4)->i, ns_dtype_size (dtype)) || bytes != size)
    return fail (u, NS_ERROR_FORMAT, "storage '%s' should hold %" G_GINT64_FORMAT " %s elements, "
                 "but its data member has %" G_GSIZE_FORMAT " bytes",
                 key, item (f, 4)->i, ns_dtype_name (dtype), size);
  Value *v = new_value (u, V_STORAGE);
  if (v != NULL)
    {
      v->storage.dtype = dtype;
      v->storage.data = data;
      v->storage.numel = (guint64) item (f, 4)->i;
      v->storage.key = g_strdup (key);
    }
  return push (u, v);
}

/* A tuple of non-negative ints, at most NS_TENSOR_MAX_DIMS long. */
static gboolean
int_tuple (Unpickler *u, Value *v, const char *role, int64_t *out, int *n)
{
  if (expect (u, v, V_TUPLE, role) == NULL)
    return FALSE;
  if (v->items->len > NS_TENSOR_MAX_DIMS)
    return fail (u, NS_ERROR_UNSUPPORTED, "a tensor has %u dimensions; at most %d are supported",
                 v->items->len, NS_TENSOR_MAX_DIMS);
  *n = (int) v->items->len;
  for (int d = 0; d < *n; d++)
    {
      Value *x = item (v->items, (guint) d);
      if (x->kind != V_INT || x->i < 0)
        return fail (u, NS_ERROR_FORMAT, "%s[%d] is not a non-negative int", role, d);
      out[d] = x->i;
    }
  return TRUE;
}

/* Highest element index the view touches + 1, or FALSE on overflow. */
static gboolean
view_extent (int n_dims, const int64_t *size, const int64_t *stride, guint64 offset,
             guint64 *numel, guint64 *extent)
{
  *numel = 1;
  guint64 last = offset;
  for (int d = 0; d < n_dims; d++)
    {
      guint64 step;
      if (!g_uint64_checked_mul (numel, *numel, (guint64) size[d])
          || (size[d] > 0 && (!g_uint64_checked_mul (&step, (guint64) (size[d] - 1), (guint64) stride[d])
                              || !g_uint64_checked_add (&last, last, step))))
        return FALSE;
    }
  *extent = *numel == 0 ? offset : last + 1;
  return TRUE;
}

static gboolean
is_contiguous (int n_dims, const int64_t *size, const int64_t *stride)
{
  int64_t expected = 1;
  for (int d = n_dims - 1; d >= 0; d--)
    {
      if (size[d] != 1 && stride[d] != expected)
        return FALSE;
      expected *= size[d];
    }
  return TRUE;
}

/* Gathers a strided view into a new row-major buffer. */
static guint8 *
gather (const guint8 *base, size_t esize, int n_dims, const int64_t *size, const int64_t *stride,
        guint64 numel)
{
  guint8 *out = g_malloc ((gsize) (numel * esize));
  int64_t index[NS_TENSOR_MAX_DIMS] = { 0 };
  for (guint64 i = 0; i < numel; i++)
    {
      int64_t at = 0;
      for (int d = 0; d < n_dims; d++)
        at += index[d] * stride[d];
      memcpy (out + i * esize, base + (guint64) at * esize, esize);
      for (int d = n_dims - 1; d >= 0 && ++index[d] == size[d]; d--)
        index[d] = 0;
    }
  return out;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
 * backward_hooks[, metadata]). */
static Value *
rebuild_tensor (Unpickler *u, GPtrArray *args)
{
  if (args->len != 6 && args->len != 7)
    {
      fail (u, NS_ERROR_FORMAT, "_rebuild_tensor_v2 takes 6 or 7 arguments, not %u", args->len);
      return NULL;
    }
  Value *storage = expect (u, item (args, 0), V_STORAGE, "_rebuild_tensor_v2's storage");
  Value *offset = storage ? expect (u, item (args, 1), V_INT, "_rebuild_tensor_v2's offset") : NULL;
  int64_t size[NS_TENSOR_MAX_DIMS] = { 0 }, stride[NS_TENSOR_MAX_DIMS] = { 0 };
  int n_dims = 0, n_strides = 0;
  if (offset == NULL
      || !int_tuple (u, item (args, 2), "the tensor size", size, &n_dims)
      || !int_tuple (u, item (args, 3), "the tensor stride", stride, &n_strides))
    return NULL;
  if (n_dims != n_strides || offset->i < 0)
    {
      fail (u, NS_ERROR_FORMAT, "a tensor has %d sizes and %d strides, offset %" G_GINT64_FORMAT,
            n_dims, n_strides, offset->i);
      return NULL;
    }
  guint64 numel, extent;
  if (!view_extent (n_dims, size, stride, (guint64) offset->i, &numel, &extent)
      || extent > storage->storage.numel)
    {
      fail (u, NS_ERROR_FORMAT, "a tensor view (offset %" G_GINT64_FORMAT ") reaches past the end of "
            "storage '%s' (%" G_GUINT64_FORMAT " elements)", offset->i, storage->storage.key,
            storage->storage.numel);
      return NULL;
    }
  NsDType dtype = storage->storage.dtype;
  size_t esize = ns_dtype_size (dtype);
  const guint8 *data = storage->storage.data + (gsize) offset->i * esize;
  if (numel > 0 && !is_contiguous (n_dims, size, stride))
    {
      /* a copy larger than its storage means elements repeat (an expanded
       * tensor): a hostile file could ask for any size that way */
      if (numel > storage->storage.numel)
        {
          fail (u, NS_ERROR_UNSUPPORTED, "a tensor view repeats elements of storage '%s' "
                "(an expanded tensor); save it with .contiguous()", storage->storage.key);
          return NULL;
        }
      data = gather (data, esize, n_dims, size, stride, numel);
      g_ptr_array_add (u->copies, (gpointer) data);
    }
  Value *v = new_value (u, V_TENSOR);
  if (v == NULL)
    return NULL;
  v->tensor = g_new0 (NsTensorView, 1);
  *v->tensor = (NsTensorView) { NULL, dtype, n_dims, { 0 }, data, (size_t) (numel * esize), u->label };
  memcpy (v->tensor->shape, size, sizeof size);
  return v;
}

/* REDUCE: only OrderedDict(), _rebuild_tensor_v2(…) and
 * _rebuild_parameter(tensor, requires_grad, hooks) may be called. */
static gboolean
op_reduce (Unpickler *u)
{
  Value *args = expect (u, pop (u), V_TUPLE, "REDUCE's arguments");
  Value *callable = args != NULL ? expect (u, pop (u), V_GLOBAL, "REDUCE's callable") : NULL;
  if (callable == NULL)
    return FALSE;
  switch (callable->global.which)
    {
    case GLOBAL_ORDERED_DICT:
      if (args->items->len != 0)
        return fail (u, NS_ERROR_FORMAT, "OrderedDict is called with arguments");
      return push (u, new_value (u, V_DICT));
    case GLOBAL_REBUILD_TENSOR:
      return push (u, rebuild_tensor (u, args->items));
    case GLOBAL_REBUILD_PARAMETER:
      if (args->items->len != 3 || item (args->items, 0)->kind != V_TENSOR)
        return fail (u, NS_ERROR_FORMAT, "_rebuild_parameter is not called with (tensor, requires_grad, hooks)");
      return push (u, item (args->items, 0));
    case GLOBAL_STORAGE_TYPE:
    default:
      return fail (u, NS_ERROR_FORMAT, "calls a storage type");
    }
}

/* BUILD on a dict sets attributes (torch's OrderedDict `_metadata`), which
 * carry nothing a loader needs: accepted and ignored. */
static gboolean
op_build (Unpickler *u)
{
  Value *state = pop (u);
  Value *target = state != NULL ? top (u) : NULL;
  if (target == NULL)
    return FALSE;
  if (target->kind != V_DICT || (state->kind != V_DICT && state->kind != V_NONE))
    return fail (u, NS_ERROR_FORMAT, "BUILD sets the state of a %s from a %s; only a dict's attributes are accepted",
                 kind_names[target->kind], kind_names[state->kind]);
  return TRUE;
}

/* ---- the opcode loop ---- */

static const struct {
  guint8 code;
  const char *name;
} opcode_names[] = {
  { '(', "MARK" }, { '.', "STOP" }, { '0', "POP" }, { '1', "POP_MARK" }, { '2', "DUP" },
  { 'F', "FLOAT" }, { 'I', "INT" }, { 'J', "BININT" }, { 'K', "BININT1" }, { 'L', "LONG" },
  { 'M', "BININT2" }, { 'N', "NONE" }, { 'P', "PERSID" }, { 'Q', "BINPERSID" },
  { 'R', "REDUCE" }, { 'S', "STRING" }, { 'T', "BINSTRING" }, { 'U', "SHORT_BINSTRING" },
  { 'V', "UNICODE" }, { 'X', "BINUNICODE" }, { 'a', "APPEND" }, { 'b', "BUILD" },
  { 'c', "GLOBAL" }, { 'd', "DICT" }, { '}', "EMPTY_DICT" }, { 'e', "APPENDS" }, { 'g', "GET" },
  { 'h', "BINGET" }, { 'i', "INST" }, { 'j', "LONG_BINGET" }, { 'l', "LIST" },
  { ']', "EMPTY_LIST" }, { 'o', "OBJ" }, { 'p', "PUT" }, { 'q', "BINPUT" }, { 'r', "LONG_BINPUT" },
  { 's', "SETITEM" }, { 't', "TUPLE" }, { ')', "EMPTY_TUPLE" }, { 'u', "SETITEMS" },
  { 'G', "BINFLOAT" }, { 'B', "BINBYTES" }, { 'C', "SHORT_BINBYTES" }, { 0x80, "PROTO" },
  { 0x81, "NEWOBJ" }, { 0x82, "EXT1" }, { 0x83, "EXT2" }, { 0x84, "EXT4" }, { 0x85, "TUPLE1" },
  { 0x86, "TUPLE2" }, { 0x87, "TUPLE3" }, { 0x88, "NEWTRUE" }, { 0x89, "NEWFALSE" },
  { 0x8a, "LONG1" }, { 0x8b, "LONG4" }, { 0x8c, "SHORT_BINUNICODE" }, { 0x8d, "BINUNICODE8" },
  { 0x8e, "BINBYTES8" }, { 0x8f, "EMPTY_SET" }, { 0x90, "ADDITEMS" }, { 0x91, "FROZENSET" },
  { 0x92, "NEWOBJ_EX" }, { 0x93, "STACK_GLOBAL" }, { 0x94, "MEMOIZE" }, { 0x95, "FRAME" },
  { 0x96, "BYTEARRAY8" }, { 0x97, "NEXT_BUFFER" }, { 0x98, "READONLY_BUFFER" },
};

static gboolean
refuse_opcode (Unpickler *u, guint8 op)
{
  const char *name = "unknown";
  for (guint i = 0; i < G_N_ELEMENTS (opcode_names); i++)
    if (opcode_names[i].code == op)
      name = opcode_names[i].name;
  u->p--;
  return fail (u, NS_ERROR_FORMAT, "pickle opcode %s (0x%02x) is not allowed in a tensor state_dict",
               name, op);
}

static gboolean
op_proto (Unpickler *u)
{
  guint64 version;
  if (!take_uint (u, 1, &version))
    return FALSE;
  if (version < 2 || version > 5)
    return fail (u, NS_ERROR_UNSUPPORTED, "pickle protocol %u is not supported (2 to 5 are)", (guint) version);
  return TRUE;
}

/* FRAME only announces the length of what follows; it changes nothing. */
static gboolean
op_frame (Unpickler *u)
{
  guint64 n;
  return take_uint (u, 8, &n);
}

static gboolean
step (Unpickler *u, guint8 op)
{
  switch (op)
    {
    case 0x80: return op_proto (u);
    case 0x95: return op_frame (u);
    case '}': return push (u, new_value (u, V_DICT));
    case ']': return push (u, new_value (u, V_LIST));
    case ')': return push (u, new_value (u, V_TUPLE));
    case 'N': return push (u, new_value (u, V_NONE));
    case 0x88: return push_int (u, V_BOOL, 1);
    case 0x89: return push_int (u, V_BOOL, 0);
    case '(': return op_mark (u);
    case 't': return push_tuple (u, pop_mark (u));
    case 0x85: return push_tuple (u, pop_n (u, 1, "TUPLE1"));
    case 0x86: return push_tuple (u, pop_n (u, 2, "TUPLE2"));
    case 0x87: return push_tuple (u, pop_n (u, 3, "TUPLE3"));
    case 'q': return op_put (u, 1);
    case 'r': return op_put (u, 4);
    case 0x94: return op_put (u, 0);
    case 'h': return op_get (u, 1);
    case 'j': return op_get (u, 4);
    case 'K': return op_int (u, 1);
    case 'M': return op_int (u, 2);
    case 'J': return op_int (u, 4);
    case 0x8a: return op_long1 (u);
    case 'G': return op_float (u);
    case 0x8c: return op_unicode (u, 1);
    case 'X': return op_unicode (u, 4);
    case 0x8d: return op_unicode (u, 8);
    case 'a': return op_extend_one (u, V_LIST);
    case 'e': return op_extend_mark (u, V_LIST);
    case 's': return op_extend_one (u, V_DICT);
    case 'u': return op_extend_mark (u, V_DICT);
    case 'c': return op_global (u);
    case 0x93: return op_stack_global (u);
    case 'R': return op_reduce (u);
    case 'b': return op_build (u);
    case 'Q': return op_persid (u);
    default: return refuse_opcode (u, op);
    }
}

/* Runs to STOP and returns the object it leaves. */
static Value *
run (Unpickler *u)
{
  gboolean stopped = FALSE;
  while (!stopped && u->p < u->end)
    {
      guint8 op = *u->p++;
      stopped = op == '.';
      if (!stopped && !step (u, op))
        return NULL;
    }
  if (!stopped)
    fail (u, NS_ERROR_FORMAT, "data.pkl ends without STOP (truncated?)");
  else if (u->stack->len != 1 || u->marks->len != 0)
    fail (u, NS_ERROR_FORMAT, "STOP leaves %u objects and %u MARKs instead of one object",
          u->stack->len, u->marks->len);
  else
    return g_ptr_array_index (u->stack, 0);
  return NULL;
}

/* The state_dict itself: the top dict, or the dict under its "state_dict"
 * key (a common training-checkpoint wrapper). */
static Value *
state_dict (Unpickler *u, Value *result)
{
  if (expect (u, result, V_DICT, "the pickled object") == NULL)
    return NULL;
  for (guint i = 0; i + 1 < result->items->len; i += 2)
    {
      Value *k = item (result->items, i), *v = item (result->items, i + 1);
      if (k->kind == V_STR && strcmp (k->s, "state_dict") == 0 && v->kind == V_DICT)
        return v;
    }
  return result;
}

static gboolean
add_tensors (Unpickler *u, NsTensorStore *store, Value *dict)
{
  /* all or nothing: every entry is checked before any is added */
  GPtrArray *items = dict->items;
  g_autoptr (GHashTable) names = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; i < items->len; i += 2)
    {
      Value *k = item (items, i), *v = item (items, i + 1);
      if (k->kind != V_STR)
        return fail (u, NS_ERROR_FORMAT, "a state_dict key is a %s, not a str", kind_names[k->kind]);
      if (v->kind != V_TENSOR)
        return fail (u, NS_ERROR_FORMAT, "state_dict entry '%s' is a %s, not a tensor", k->s,
                     kind_names[v->kind]);
      if (!g_hash_table_add (names, k->s) || ns_tensor_store_find (store, k->s) != NULL)
        return fail (u, NS_ERROR_FORMAT, "tensor '%s' appears twice", k->s);
    }
  for (guint i = 0; i < items->len; i += 2)
    {
      NsTensorView view = *item (items, i + 1)->tensor;
      view.name = item (items, i)->s;
      if (!ns_tensor_store_add (store, &view, u->error))
        g_return_val_if_reached (FALSE);   /* names were checked above */
    }
  return TRUE;
}

gboolean
ns_pickle_read_state_dict (NsTensorStore *store, const guint8 *pkl, gsize size, const char *label,
                           NsPickleStorageFunc storage, gpointer user_data, GError **error)
{
  g_return_val_if_fail (store != NULL && storage != NULL && (pkl != NULL || size == 0), FALSE);
  /* a private error slot, so "did the storage callback fail" is answerable
   * even when the caller passes error = NULL */
  GError *local = NULL;
  Unpickler u = {
    .start = pkl, .p = pkl, .end = pkl + size, .label = label,
    .storage = storage, .storage_data = user_data,
    .arena = g_ptr_array_new_with_free_func (value_free),
    .stack = g_ptr_array_new (),
    .marks = g_array_new (FALSE, FALSE, sizeof (guint)),
    .memo = g_hash_table_new (NULL, NULL),
    .copies = g_ptr_array_new_with_free_func (g_free),
    .error = &local,
  };
  Value *result = run (&u);
  Value *dict = result != NULL ? state_dict (&u, result) : NULL;
  gboolean ok = dict != NULL && add_tensors (&u, store, dict);
  if (ok)
    for (guint i = 0; i < u.copies->len; i++)
      ns_tensor_store_keep (store, g_ptr_array_steal_index (u.copies, i--), g_free);
  g_ptr_array_unref (u.copies);
  g_hash_table_unref (u.memo);
  g_array_unref (u.marks);
  g_ptr_array_unref (u.stack);
  g_ptr_array_unref (u.arena);
  if (local != NULL)
    g_propagate_error (error, local);
  return ok;
}

/* ---- writer ---- */

typedef struct {
  GByteArray *out;
  GHashTable *memo;               /* "module\nname" → memo index + 1 */
} Pickler;

static void
put_op (Pickler *p, guint8 op)
{
  g_byte_array_append (p->out, &op, 1);
}

static void
put_str (Pickler *p, const char *s)
{
  size_t n = strlen (s);
  put_op (p, 'X');
  ns_files_put_le32 (p->out, (guint32) n);
  g_byte_array_append (p->out, (const guint8 *) s, (guint) n);
}

static void
put_int (Pickler *p, gint64 v)
{
  if (v >= 0 && v <= 0xff)
    {
      put_op (p, 'K');
      put_op (p, (guint8) v);
    }
  else if (v >= 0 && v <= 0xffff)
    {
      put_op (p, 'M');
      ns_files_put_le16 (p->out, (guint16) v);
    }
  else if (v >= G_MININT32 && v <= G_MAXINT32)
    {
      put_op (p, 'J');
      ns_files_put_le32 (p->out, (guint32) (gint32) v);
    }
  else
    {
      put_op (p, 0x8a);             /* LONG1, 8 bytes two's complement */
      put_op (p, 8);
      ns_files_put_le64 (p->out, (guint64) v);
    }
}

/* Globals are memoized like the pickle module does, so each is named once. */
static void
put_global (Pickler *p, const char *module, const char *name)
{
  g_autofree char *key = g_strdup_printf ("%s\n%s\n", module, name);
  guint index = GPOINTER_TO_UINT (g_hash_table_lookup (p->memo, key));
  if (index > 0)
    {
      put_op (p, 'j');              /* LONG_BINGET */
      ns_files_put_le32 (p->out, index - 1);
      return;
    }
  put_op (p, 'c');
  g_byte_array_append (p->out, (const guint8 *) key, (guint) strlen (key));
  put_op (p, 'r');                  /* LONG_BINPUT */
  index = g_hash_table_size (p->memo);
  ns_files_put_le32 (p->out, index);
  g_hash_table_insert (p->memo, g_steal_pointer (&key), GUINT_TO_POINTER (index + 1));
}

static void
put_int_tuple (Pickler *p, int n, const int64_t *values)
{
  put_op (p, '(');
  for (int d = 0; d < n; d++)
    put_int (p, values[d]);
  put_op (p, 't');
}

/* _rebuild_tensor_v2(storage(key), 0, size, contiguous stride, False,
 * OrderedDict()). */
static void
put_tensor (Pickler *p, const NsTensorView *t, guint key)
{
  int64_t stride[NS_TENSOR_MAX_DIMS];
  for (int d = t->n_dims - 1, s = 1; d >= 0; d--)
    {
      stride[d] = s;
      s *= MAX (t->shape[d], 1);    /* as torch strides empty dims */
    }
  g_autofree char *key_text = g_strdup_printf ("%u", key);
  put_global (p, "torch._utils", "_rebuild_tensor_v2");
  put_op (p, '(');
  put_op (p, '(');
  put_str (p, "storage");
  put_global (p, "torch", storage_name (t->dtype));
  put_str (p, key_text);
  put_str (p, "cpu");
  put_int (p, ns_tensor_n_elements (t));
  put_op (p, 't');
  put_op (p, 'Q');                  /* BINPERSID */
  put_int (p, 0);
  put_int_tuple (p, t->n_dims, t->shape);
  put_int_tuple (p, t->n_dims, stride);
  put_op (p, 0x89);                 /* NEWFALSE: requires_grad */
  put_global (p, "collections", "OrderedDict");
  put_op (p, ')');
  put_op (p, 'R');
  put_op (p, 't');
  put_op (p, 'R');
}

gboolean
ns_pickle_write_state_dict (const NsTensorStore *store, GByteArray *out, GError **error)
{
  g_return_val_if_fail (store != NULL && out != NULL, FALSE);
  guint n = ns_tensor_store_len (store);
  for (guint i = 0; i < n; i++)
    {
      const NsTensorView *t = ns_tensor_store_get (store, i);
      if (storage_name (t->dtype) == NULL)
        return ns_files_fail (error, NS_ERROR_UNSUPPORTED,
                              "tensor '%s' is %s, which a torch checkpoint cannot hold here "
                              "(F32 F16 BF16 F64 I8 U8 I32 I64 can)", t->name, ns_dtype_name (t->dtype));
    }
  Pickler p = { out, g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL) };
  put_op (&p, 0x80);
  put_op (&p, 2);
  put_global (&p, "collections", "OrderedDict");
  put_op (&p, ')');
  put_op (&p, 'R');
  /* SETITEMS in batches of 1000, as the pickle module writes them */
  for (guint i = 0; i < n; i++)
    {
      if (i % 1000 == 0)
        put_op (&p, '(');
      put_str (&p, ns_tensor_store_get (store, i)->name);
      put_tensor (&p, ns_tensor_store_get (store, i), i);
      if (i % 1000 == 999 || i == n - 1)
        put_op (&p, 'u');
    }
  put_op (&p, '.');
  g_hash_table_unref (p.memo);
  return TRUE;
}
