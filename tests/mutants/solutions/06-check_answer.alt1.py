pg.ask("这张图片里有哪些颜色？")
pg.wait()
last_turn = pg.turns[-1]
answer_1 = last_turn.answer
