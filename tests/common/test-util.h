/* test-util.h — helpers shared by the test programs: where the golden data
 * lives, loading its tensors and JSON, and the golden comparison rule
 * (max|ours − ref| / max|ref| ≤ tolerance, NaN never passes). */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>
#include "files/tensor.h"

G_BEGIN_DECLS

/* $NS_GOLDEN_DIR (set by meson); skips the test (g_test_skip) when absent. */
const char *ns_test_golden_dir (void);
/* g_build_filename (golden_dir, parts…, NULL); NULL when golden data is absent. */
char *ns_test_golden_path (const char *first, ...) G_GNUC_NULL_TERMINATED;

/* Loads a safetensors file, failing the test on error. */
NsTensorStore *ns_test_load_safetensors (const char *path);
/* Parses a JSON file, failing the test on error (g_object_unref the parser). */
JsonParser *ns_test_load_json (const char *path);
/* tolerance_rel_to_max_abs[name] of a run/units JSON; `fallback` when absent. */
double ns_test_tolerance (JsonObject *root, const char *name, double fallback);

/* max|ours − ref| / max|ref| over n values; +inf if any value is NaN/inf or
 * ref is all zero while ours is not. `ref` is any float dtype view with n
 * elements. */
double ns_test_rel_error (const float *ours, const NsTensorView *ref, size_t n);
/* Same on a subset: only indices where keep[i] is non-zero (keep may be NULL). */
double ns_test_rel_error_masked (const float *ours, const NsTensorView *ref, size_t n,
                                 const guint8 *keep);
/* Asserts rel_error ≤ tol, printing name, error and tolerance. */
void ns_test_assert_close (const char *what, const float *ours, const NsTensorView *ref,
                           size_t n, double tol);

/* A fresh temporary folder, removed recursively by ns_test_rmtree. */
char *ns_test_tmpdir (void);
void  ns_test_rmtree (const char *path);

G_END_DECLS
