/* model/pipeline.c — being written. */
