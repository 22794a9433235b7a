my_expected = {"astronaut.jpg": ["astronaut", "flag"], "camera.png": ["camera", "man"],
               "chelsea.jpg": ["cat", "orange"], "coffee.jpg": ["coffee", "cup"], "rocket.jpg": ["rocket", "launch"]}
weak = sorted(n for n, r in records.items() if my_score(r.get('answer', ''), my_expected[n]) < 1)
