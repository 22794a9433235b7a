def strip_role_prefix(text):
    rest = text.lstrip()
    if rest.startswith("assistant\n"):
        return rest.removeprefix("assistant\n").lstrip()
    return text
