def my_score(answer, keywords):
    if not keywords:
        return 1.0
    text = answer.lower()
    found = 0
    for keyword in keywords:
        keyword = keyword.lower()
        if keyword.isascii():
            found += bool(re.search(r"(?<![a-z0-9])" + re.escape(keyword) + r"(?![a-z0-9])", text))
        else:
            found += keyword in text
    return found / len(keywords)
