/* model/transformer.c — being written. */
