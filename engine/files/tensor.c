/* files/tensor.c — being written. */
