/* model/arch.c — being written. */
