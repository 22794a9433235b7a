def ask_raw(base_url, api_key, model, question):
    body = {"model": model, "stream": True, "max_tokens": 100,
            "messages": [{"role": "user", "content": [{"type": "text", "text": question}]}]}
    pieces = []
    with httpx.Client(base_url=base_url, timeout=30) as client:   # httpx joins the paths, slash or not
        with client.stream("POST", "chat/completions", json=body,
                           headers={"Authorization": "Bearer " + api_key}) as r:
            for line in r.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    event = json.loads(line[6:])
                    if "error_code" in event:
                        raise RuntimeError("the backend failed: " + event["text"])
                    if event["choices"]:
                        pieces.append(event["choices"][0]["delta"].get("content", ""))
    return labkit.strip_role_prefix("".join(pieces))
