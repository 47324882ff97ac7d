/* files/torch-checkpoint.c — being written. */
