kv_bytes = 2 * 60 * 8 * 128 * 2
