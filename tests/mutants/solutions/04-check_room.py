def room_for_answer(messages):
    return max(0, 4096 - labkit.estimate_tokens(messages))
