def score_answer(answer, keywords):
    if not keywords:
        return 1.0
    text = answer.lower()
    hits = 0
    for keyword in keywords:
        keyword = keyword.lower()
        if any("\u4e00" <= ch <= "\u9fff" for ch in keyword):
            hits += keyword in text
        else:
            hits += re.search(r"(?<!\w)" + re.escape(keyword) + r"(?!\w)", text) is not None
    return hits / len(keywords)
