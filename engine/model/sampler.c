/* model/sampler.c — being written. */
