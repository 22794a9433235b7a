def compare_two(path_a, path_b, ask):
    a, b = Image.open(path_a).convert("RGB"), Image.open(path_b).convert("RGB")
    a = a.resize((round(a.width * 336 / a.height), 336))
    b = b.resize((round(b.width * 336 / b.height), 336))
    both = Image.new("RGB", (a.width + b.width, 336), "white")
    both.paste(a, (0, 0))
    both.paste(b, (a.width, 0))
    return ask([labkit.user("Left and right: how do these two pictures differ?", both)], max_tokens=150)
