/* model/vae.c — being written. */
