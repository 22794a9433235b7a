data = base64.b64encode(Path("images/coffee.jpg").read_bytes()).decode()
my_message = {"role": "user", "content": [
    {"type": "text", "text": "What is in this image?"},
    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + data}},
]}
