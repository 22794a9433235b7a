my_expected = {"astronaut.jpg": ["astronaut", "flag"], "camera.png": ["camera", "man"],
               "chelsea.jpg": ["cat", "orange"], "coffee.jpg": ["coffee", "cup"], "rocket.jpg": ["rocket", "launch"]}
weak = []
for name in sorted(records):
    if my_score(records[name].get('answer', ''), my_expected[name]) < 1:
        weak.append(name)
