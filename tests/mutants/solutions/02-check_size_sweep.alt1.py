rows = []
for side in (100, 300, 500, 800, 1200):
    picture = Image.fromarray(np.full((side, side, 3), 128, np.uint8))
    info = labkit.describe_image(labkit.encode_image(picture))
    reply = labkit.chat("What colour is this?", image=picture, max_tokens=16, display=False)
    rows.append({"width": side, "height": side, "bytes": len(labkit.encode_image(picture)),
                 "tokens": info.image_tokens, "ttft": reply.ttft})
