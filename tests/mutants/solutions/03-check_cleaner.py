PREFIX = "assistant\n"

def my_cleaner(pieces):
    held, deciding = "", True
    for piece in pieces:
        if not deciding:
            if piece:
                yield piece
            continue
        held += piece
        if held.startswith(PREFIX):
            deciding = False
            if held[len(PREFIX):]:
                yield held[len(PREFIX):]
        elif not PREFIX.startswith(held):
            deciding = False
            yield held
    if deciding and held:
        yield held
