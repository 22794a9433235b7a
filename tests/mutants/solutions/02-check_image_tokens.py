def image_tokens(path):
    return labkit.describe_image(labkit.encode_image(path)).image_tokens
