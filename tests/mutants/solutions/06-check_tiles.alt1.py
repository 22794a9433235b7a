plan = anyres_plan(1000, 3000)
tiles = (plan.grid[0] // 336) * (plan.grid[1] // 336)
