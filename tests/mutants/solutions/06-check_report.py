saved = pg.save("outputs/report.jsonl")
