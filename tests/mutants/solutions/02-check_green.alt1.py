green_image = np.full((64, 64, 3), (0, 255, 0), dtype=np.uint8)
green_reply = labkit.chat("What colour is this?", image=green_image, max_tokens=60, display=False)
