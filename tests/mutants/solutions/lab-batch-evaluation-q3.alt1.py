def summarise(scores):
    if len(scores) == 0:
        raise ValueError("scores 为空：没有得分可以汇总")
    weak = [name for name in sorted(scores) if scores[name] < 1]
    return {"n": len(scores), "mean": sum(scores.values()) / len(scores), "weak": weak}
