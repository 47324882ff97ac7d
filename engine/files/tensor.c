/* files/tensor.c — dtype table, scalar conversions and the tensor store. */
#include <math.h>
#include <string.h>

#include "nextstep.h"
#include "files/tensor.h"

static const struct {
  const char *name;
  size_t size;
} dtype_info[NS_DTYPE_COUNT] = {
  [NS_DTYPE_F32] = { "F32", 4 },
  [NS_DTYPE_F16] = { "F16", 2 },
  [NS_DTYPE_BF16] = { "BF16", 2 },
  [NS_DTYPE_F64] = { "F64", 8 },
  [NS_DTYPE_F8_E4M3] = { "F8_E4M3", 1 },
  [NS_DTYPE_I8] = { "I8", 1 },
  [NS_DTYPE_U8] = { "U8", 1 },
  [NS_DTYPE_I32] = { "I32", 4 },
  [NS_DTYPE_I64] = { "I64", 8 },
  [NS_DTYPE_Q4] = { "Q4", 1 },
};

gboolean
ns_dtype_from_name (const char *name, NsDType *out)
{
  for (int d = 0; name != NULL && d < NS_DTYPE_COUNT; d++)
    if (strcmp (name, dtype_info[d].name) == 0)
      {
        *out = (NsDType) d;
        return TRUE;
      }
  return FALSE;
}

const char *
ns_dtype_name (NsDType dtype)
{
  g_return_val_if_fail (dtype < NS_DTYPE_COUNT, NULL);
  return dtype_info[dtype].name;
}

size_t
ns_dtype_size (NsDType dtype)
{
  g_return_val_if_fail (dtype < NS_DTYPE_COUNT, 0);
  return dtype_info[dtype].size;
}

static uint32_t
f32_bits (float v)
{
  uint32_t u;
  memcpy (&u, &v, 4);
  return u;
}

static float
bits_f32 (uint32_t u)
{
  float v;
  memcpy (&v, &u, 4);
  return v;
}

float
ns_bf16_to_f32 (uint16_t v)
{
  return bits_f32 ((uint32_t) v << 16);
}

uint16_t
ns_f32_to_bf16 (float v)
{
  uint32_t u = f32_bits (v);
  if (isnan (v))
    return (uint16_t) ((u >> 16) | 0x40);   /* keep it a (quiet) NaN */
  /* Adding 0x7fff plus the lowest kept bit rounds ties to even; an overflow
   * carries into the exponent and gives inf, as it should. */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t) (u >> 16);
}

float
ns_f16_to_f32 (uint16_t v)
{
  uint32_t sign = (uint32_t) (v & 0x8000u) << 16;
  uint32_t exp = (v >> 10) & 0x1fu;
  uint32_t man = v & 0x3ffu;
  if (exp == 0x1f)
    return bits_f32 (sign | 0x7f800000u | (man << 13));
  if (exp == 0)
    {
      /* zero or subnormal: man × 2^-24, exact in float */
      float f = ldexpf ((float) man, -24);
      return sign ? -f : f;
    }
  return bits_f32 (sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t
ns_f32_to_f16 (float v)
{
  uint32_t u = f32_bits (v);
  uint16_t sign = (uint16_t) ((u >> 16) & 0x8000u);
  uint32_t exp = (u >> 23) & 0xffu;
  uint32_t man = u & 0x7fffffu;
  if (exp == 0xff)
    return sign | 0x7c00u | (man ? 0x200u : 0u);
  int e = (int) exp - 127 + 15;
  if (e >= 0x1f)
    return sign | 0x7c00u;
  if (e <= 0)
    {
      /* subnormal half (or zero): shift the full mantissa into place and
       * round to nearest even on the bits shifted out */
      if (e < -10)
        return sign;
      uint32_t full = man | 0x800000u;
      int shift = 14 - e;
      uint32_t half = full >> shift;
      uint32_t rest = full & ((1u << shift) - 1u);
      uint32_t mid = 1u << (shift - 1);
      if (rest > mid || (rest == mid && (half & 1u)))
        half++;
      return sign | (uint16_t) half;
    }
  uint32_t half = ((uint32_t) e << 10) | (man >> 13);
  uint32_t rest = man & 0x1fffu;
  /* a carry out of the mantissa bumps the exponent, up to inf: correct */
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u)))
    half++;
  return sign | (uint16_t) half;
}

float
ns_f8e4m3_to_f32 (uint8_t v)
{
  /* E4M3FN: bias 7, no infinities, S.1111.111 is NaN. */
  float sign = (v & 0x80u) ? -1.0f : 1.0f;
  int exp = (v >> 3) & 0xf;
  int man = v & 0x7;
  if (exp == 0xf && man == 0x7)
    return NAN;
  if (exp == 0)
    return sign * ldexpf ((float) man, -9);
  return sign * ldexpf ((float) (8 + man), exp - 10);
}

int64_t
ns_tensor_n_elements (const NsTensorView *t)
{
  int64_t n = 1;
  for (int d = 0; d < t->n_dims; d++)
    n *= t->shape[d];
  return n;
}

char *
ns_shape_to_string (int n_dims, const int64_t *shape)
{
  GString *s = g_string_new ("[");
  for (int i = 0; i < n_dims; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? ", " : "", shape[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

gboolean
ns_dtype_is_weight (NsDType dtype)
{
  return dtype == NS_DTYPE_F32 || dtype == NS_DTYPE_F16 || dtype == NS_DTYPE_BF16;
}

double
ns_tensor_get_f64 (const NsTensorView *t, int64_t i)
{
  g_return_val_if_fail (t != NULL && i >= 0 && t->dtype < NS_DTYPE_COUNT, NAN);
  const guint8 *p = (const guint8 *) t->data + (size_t) i * dtype_info[t->dtype].size;
  /* memcpy: views into a file need not be aligned */
  union { float f; double d; uint16_t u16; int32_t i32; int64_t i64; } v;
  memcpy (&v, p, dtype_info[t->dtype].size);
  switch (t->dtype)
    {
    case NS_DTYPE_F32: return v.f;
    case NS_DTYPE_F16: return ns_f16_to_f32 (v.u16);
    case NS_DTYPE_BF16: return ns_bf16_to_f32 (v.u16);
    case NS_DTYPE_F64: return v.d;
    case NS_DTYPE_F8_E4M3: return ns_f8e4m3_to_f32 (*p);
    case NS_DTYPE_I8: return (int8_t) *p;
    case NS_DTYPE_U8: return *p;
    case NS_DTYPE_I32: return v.i32;
    case NS_DTYPE_I64: return (double) v.i64;
    default: g_return_val_if_reached (NAN);
    }
}

float
ns_tensor_get_f32 (const NsTensorView *t, int64_t i)
{
  return (float) ns_tensor_get_f64 (t, i);
}

float *
ns_tensor_to_f32 (const NsTensorView *t)
{
  int64_t n = ns_tensor_n_elements (t);
  float *out = g_new (float, MAX (n, 1));
  if (t->dtype == NS_DTYPE_F32)
    memcpy (out, t->data, (size_t) n * sizeof (float));
  else
    for (int64_t i = 0; i < n; i++)
      out[i] = ns_tensor_get_f32 (t, i);
  return out;
}

/* ---- store ---- */

typedef struct {
  gpointer memory;
  GDestroyNotify destroy;
} KeptMemory;

struct NsTensorStore {
  GPtrArray *views;        /* NsTensorView*, insertion order, owned */
  GHashTable *by_name;     /* view->name → view */
  GArray *kept;            /* KeptMemory */
  GStringChunk *files;     /* interned copies of view->file */
};

static void
view_free (gpointer p)
{
  NsTensorView *v = p;
  g_free (v->name);
  g_free (v);
}

NsTensorStore *
ns_tensor_store_new (void)
{
  NsTensorStore *s = g_new0 (NsTensorStore, 1);
  s->views = g_ptr_array_new_with_free_func (view_free);
  s->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  s->kept = g_array_new (FALSE, FALSE, sizeof (KeptMemory));
  s->files = g_string_chunk_new (256);
  return s;
}

void
ns_tensor_store_free (NsTensorStore *store)
{
  if (store == NULL)
    return;
  g_hash_table_unref (store->by_name);
  g_ptr_array_unref (store->views);
  /* views point into kept memory, so it goes last, newest first */
  for (guint i = store->kept->len; i-- > 0;)
    {
      KeptMemory *k = &g_array_index (store->kept, KeptMemory, i);
      if (k->destroy != NULL)
        k->destroy (k->memory);
    }
  g_array_unref (store->kept);
  g_string_chunk_free (store->files);
  g_free (store);
}

void
ns_tensor_store_keep (NsTensorStore *store, gpointer memory, GDestroyNotify destroy)
{
  g_return_if_fail (store != NULL);
  KeptMemory k = { memory, destroy };
  g_array_append_val (store->kept, k);
}

gboolean
ns_tensor_store_add (NsTensorStore *store, const NsTensorView *view, GError **error)
{
  g_return_val_if_fail (store != NULL && view != NULL && view->name != NULL, FALSE);
  const NsTensorView *old = g_hash_table_lookup (store->by_name, view->name);
  if (old != NULL)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                   "%s: tensor '%s' appears twice (first in %s); tensor names must be unique",
                   view->file ? view->file : "(memory)", view->name,
                   old->file ? old->file : "(memory)");
      return FALSE;
    }
  NsTensorView *v = g_memdup2 (view, sizeof *view);
  v->name = g_strdup (view->name);
  if (view->file != NULL)
    v->file = g_string_chunk_insert_const (store->files, view->file);
  g_ptr_array_add (store->views, v);
  g_hash_table_insert (store->by_name, v->name, v);
  return TRUE;
}

const NsTensorView *
ns_tensor_store_find (const NsTensorStore *store, const char *name)
{
  g_return_val_if_fail (store != NULL && name != NULL, NULL);
  return g_hash_table_lookup (store->by_name, name);
}

guint
ns_tensor_store_len (const NsTensorStore *store)
{
  g_return_val_if_fail (store != NULL, 0);
  return store->views->len;
}

const NsTensorView *
ns_tensor_store_get (const NsTensorStore *store, guint i)
{
  g_return_val_if_fail (store != NULL && i < store->views->len, NULL);
  return g_ptr_array_index (store->views, i);
}

int64_t
ns_tensor_store_n_elements (const NsTensorStore *store)
{
  g_return_val_if_fail (store != NULL, 0);
  int64_t n = 0;
  for (guint i = 0; i < store->views->len; i++)
    n += ns_tensor_n_elements (g_ptr_array_index (store->views, i));
  return n;
}
