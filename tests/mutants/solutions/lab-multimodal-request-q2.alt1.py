def collect_stream(chunks):
    text, finish_reason = "", None
    for chunk in chunks:
        for choice in chunk.choices[:1]:
            text += choice.delta.content or ""
            finish_reason = choice.finish_reason or finish_reason
    return text, finish_reason
