/* embedding.c — rows of an embedding table picked by token ids. */
#include "cpu-backend.h"

void
ns_cpu_embedding (NsBackend *b, float *out, const NsMat *table, const int32_t *ids, int n)
{
  for (int i = 0; i < n; i++)
    g_return_if_fail (ids[i] >= 0 && ids[i] < table->rows);
#pragma omp parallel for num_threads (ns_cpu_threads (b)) \
  if ((size_t) n * table->cols > NS_CPU_PARALLEL_MIN)
  for (int i = 0; i < n; i++)
    ns_cpu_convert (out + (size_t) i * table->cols, table, (size_t) ids[i] * table->cols,
                    table->cols);
}
