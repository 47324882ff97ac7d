/* model/model.c — being written. */
