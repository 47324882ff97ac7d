/* files/safetensors.c — being written. */
