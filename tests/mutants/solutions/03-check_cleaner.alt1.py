def my_cleaner(pieces):
    prefix, buffer, it = "assistant\n", "", iter(pieces)
    for piece in it:
        buffer += piece
        if len(buffer) >= len(prefix) or not prefix.startswith(buffer):
            break
    yield buffer[len(prefix):] if buffer.startswith(prefix) else buffer
    for piece in it:
        yield piece
