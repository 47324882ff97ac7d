/* philox.h — the engine's Gaussian draws, shared by the CPU backend and the
 * CUDA kernels so that a seed gives the same noise on both (C and CUDA
 * compile the same inline code).
 *
 * Mapping:
 *   key     = { seed & 0xffffffff, seed >> 32 }
 *   counter = { token, draw, image, block }      block = 0 .. ceil(dim/4) − 1
 *   Philox4x32-10 of (counter, key) gives 4 words w0..w3 (Random123
 *   definition: multipliers 0xD2511F53 / 0xCD9E8D57, Weyl key bumps
 *   0x9E3779B9 / 0xBB67AE85, 10 rounds).
 *   u_k = (w_k + 0.5) · 2^-32 in double, so u_k ∈ (0, 1).
 *   Box–Muller in double:  r = sqrt(−2 ln u0), φ = 2π u1 →
 *     out[4·block + 0] = (float) (r cos φ), out[4·block + 1] = (float) (r sin φ);
 *   the same with (u2, u3) for out[4·block + 2], out[4·block + 3].
 *   Values past `dim` in the last block are dropped.
 * `token` is the image-token index (raster order), `draw` the sampler's draw
 * number within the token (engine/model/sampler.c), `image` the image index
 * of the request. */
#pragma once

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#  define NS_PHILOX_FN static inline __host__ __device__
#else
#  define NS_PHILOX_FN static inline
#endif

#define NS_PHILOX_M0 0xD2511F53u
#define NS_PHILOX_M1 0xCD9E8D57u
#define NS_PHILOX_W0 0x9E3779B9u
#define NS_PHILOX_W1 0xBB67AE85u
#define NS_PHILOX_TWO_PI 6.283185307179586476925286766559

/* One Philox4x32-10 block. */
NS_PHILOX_FN void
ns_philox4x32_10 (const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int round = 0; round < 10; round++)
    {
      if (round > 0)
        {
          k0 += NS_PHILOX_W0;
          k1 += NS_PHILOX_W1;
        }
      uint64_t p0 = (uint64_t) NS_PHILOX_M0 * c0, p1 = (uint64_t) NS_PHILOX_M1 * c2;
      uint32_t n0 = (uint32_t) (p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t) (p0 >> 32) ^ c3 ^ k1;
      c0 = n0;
      c1 = (uint32_t) p1;
      c2 = n2;
      c3 = (uint32_t) p0;
    }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

/* The four N(0, 1) values of block `block` of draw (seed, image, token, draw). */
NS_PHILOX_FN void
ns_philox_normal4 (uint64_t seed, uint32_t image, uint32_t token, uint32_t draw,
                   uint32_t block, float out[4])
{
  const uint32_t key[2] = { (uint32_t) seed, (uint32_t) (seed >> 32) };
  const uint32_t ctr[4] = { token, draw, image, block };
  uint32_t w[4];
  ns_philox4x32_10 (ctr, key, w);
  for (int pair = 0; pair < 2; pair++)
    {
      double u0 = ((double) w[2 * pair] + 0.5) * (1.0 / 4294967296.0);
      double u1 = ((double) w[2 * pair + 1] + 0.5) * (1.0 / 4294967296.0);
      double r = sqrt (-2.0 * log (u0)), phi = NS_PHILOX_TWO_PI * u1;
      out[2 * pair] = (float) (r * cos (phi));
      out[2 * pair + 1] = (float) (r * sin (phi));
    }
}
