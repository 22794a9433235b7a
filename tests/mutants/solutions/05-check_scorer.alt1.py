def my_score(answer, keywords):
    words = re.findall(r"[a-z0-9]+", answer.lower())
    joined = " " + " ".join(words) + " "
    hits = [(" " + k.lower() + " " in joined) if k.isascii() else (k in answer) for k in keywords]
    return sum(hits) / len(hits) if hits else 1.0
