def ask_raw(base_url, api_key, model, question):
    body = {"model": model, "messages": [{"role": "user", "content": question}], "max_tokens": 64, "stream": True}
    text = ""
    with httpx.stream("POST", base_url.rstrip("/") + "/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {api_key}"}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[len("data:"):].strip()
            if data == "[DONE]":
                break
            event = json.loads(data)
            if "error_code" in event:  # the backend's error in the middle of the answer: never return half of it
                raise RuntimeError(f"backend error {event['error_code']}: {event.get('text', '')}")
            for choice in event.get("choices", []):
                text += choice.get("delta", {}).get("content") or ""
    return text
