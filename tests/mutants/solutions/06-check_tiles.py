tiles = anyres_plan(1000, 3000).tiles
