def time_to_first_text(stream):
    t0 = time.monotonic()
    first = next((piece for piece in stream if piece != ""), None)
    return None if first is None else time.monotonic() - t0
