green_image = np.zeros((64, 64, 3), np.uint8)
green_image[..., 1] = 255
green_reply = labkit.chat("它是什么颜色？", image=green_image, max_tokens=100)
