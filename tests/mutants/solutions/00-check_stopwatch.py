def time_to_first_text(stream):
    start = time.perf_counter()
    for piece in stream:
        if piece:
            return time.perf_counter() - start
    return None
