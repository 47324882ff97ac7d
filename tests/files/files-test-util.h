/* files-test-util.h — helpers for the tests of engine/files. */
#pragma once

#include <glib.h>
#include "files/tensor.h"

G_BEGIN_DECLS

/* TRUE when `p` lies in a mapping of a file whose path ends with `suffix`
 * (read from /proc/self/maps): proof that a view was not copied. */
gboolean ns_files_test_is_mapped_from (const void *p, const char *suffix);

/* Asserts that `error` is set and its message mentions every string in the
 * NULL-terminated list. */
void ns_files_test_assert_error (const GError *error, const char *first, ...) G_GNUC_NULL_TERMINATED;

/* Asserts two views have the same dtype, shape and bytes. */
void ns_files_test_assert_same_tensor (const NsTensorView *a, const NsTensorView *b);

/* Writes `size` bytes to `dir`/`name`; returns the path (g_free it). */
char *ns_files_test_write (const char *dir, const char *name, const void *data, gsize size);

G_END_DECLS
