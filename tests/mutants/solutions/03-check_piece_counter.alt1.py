def count_pieces(stream):
    n = 0
    for piece in stream:
        if piece != '':
            n += 1
    return n
