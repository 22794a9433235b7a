def image_tokens(path):
    sent = labkit.describe_image(labkit.encode_image(path))
    return labkit.estimate_image_tokens(sent.width, sent.height)
