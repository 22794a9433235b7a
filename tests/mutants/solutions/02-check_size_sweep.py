rows = []
for side in (224, 336, 672, 1344):
    picture = Image.fromarray(np.random.default_rng(side).integers(0, 255, (side, side, 3), dtype=np.uint8))
    info = labkit.describe_image(labkit.encode_image(picture))
    reply = labkit.chat("What colour is this?", image=picture, max_tokens=16, display=False)
    rows.append({"width": side, "height": side, "bytes": info.bytes, "tokens": info.image_tokens, "ttft": reply.ttft})
