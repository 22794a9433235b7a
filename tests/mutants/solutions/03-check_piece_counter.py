def count_pieces(stream):
    return sum(1 for piece in stream if piece)
