def max_sequences(gpu_gib, params_billion, layers, kv_heads, head_dim, context=4096, utilization=0.9):
    weights_gib = params_billion * 1e9 * 2 / 2**30
    per_sequence_gib = 2 * layers * kv_heads * head_dim * 2 * context / 2**30
    return max(0, int((gpu_gib * utilization - weights_gib) // per_sequence_gib))
