def max_sequences(gpu_gib, params_billion, layers, kv_heads, head_dim, context=4096, utilization=0.9):
    free_bytes = gpu_gib * 2**30 * utilization - params_billion * 1e9 * 2
    return max(0, int(free_bytes // (2 * layers * kv_heads * head_dim * 2 * context)))
