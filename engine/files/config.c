/* files/config.c — being written. */
