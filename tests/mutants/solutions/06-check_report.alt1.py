report = Path("outputs") / "report.jsonl"
saved = pg.save(report)
