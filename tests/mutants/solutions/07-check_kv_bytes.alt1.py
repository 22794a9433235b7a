layers, kv_heads, head_dim = 60, 8, 128
kv_bytes = 2 * layers * kv_heads * head_dim * 2
