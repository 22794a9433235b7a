def compare_two(path_a, path_b, ask):
    a = ask([labkit.user("Describe this image in one sentence.", path_a)], max_tokens=60)
    b = ask([labkit.user("Describe this image in one sentence.", path_b)], max_tokens=60)
    return ask([labkit.user(f"Image A: {a}\nImage B: {b}\nHow do the two images differ?")], max_tokens=80)
