def evaluate(records, expected):
    return {name: (score_answer(records[name]["answer"], keywords)
                   if records.get(name, {}).get("status") == "ok" else 0.0)
            for name, keywords in expected.items()}
