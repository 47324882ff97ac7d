/* model/fm-head.c — being written. */
