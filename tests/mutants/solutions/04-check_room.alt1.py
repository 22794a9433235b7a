def room_for_answer(messages):
    used = 0
    for m in messages:
        parts = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
        for p in parts:
            if p["type"] == "text":
                used += labkit.estimate_tokens([{"role": "user", "content": p["text"]}])
            else:
                used += labkit.describe_image(p["image_url"]["url"]).image_tokens
    return max(0, 4096 - used)
