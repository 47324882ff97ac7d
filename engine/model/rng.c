/* model/rng.c — being written. */
