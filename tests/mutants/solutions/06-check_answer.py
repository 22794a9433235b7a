answer_1 = pg.ask("What colours are in this image?").wait().turns[-1].answer
