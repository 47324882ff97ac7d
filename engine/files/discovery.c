/* files/discovery.c — being written. */
