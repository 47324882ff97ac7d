/* embedding.cu — rows of an embedding table picked by device-resident token
 * ids (engine/cpu/embedding.c). An id outside the table gives a NaN row:
 * the kernel cannot raise an error, and NaN makes the fault visible. */
#include "cuda-common.cuh"

__global__ void
embedding_kernel (float *out, NsMat table, const int32_t *ids, size_t n)
{
  NS_GRID_STRIDE (i, n)
    {
      size_t r = i / table.cols, c = i % table.cols;
      int id = ids[r];
      out[i] = id >= 0 && id < table.rows ? ns_load_weight (table, (size_t) id * table.cols + c)
                                          : __int_as_float (0x7fc00000);
    }
}

void
ns_cuda_embedding (NsBackend *b, float *out, const NsMat *table, const int32_t *ids, int n)
{
  size_t total = (size_t) n * table->cols;
  NS_LAUNCH (b, total, embedding_kernel, out, *table, ids, total);
}
