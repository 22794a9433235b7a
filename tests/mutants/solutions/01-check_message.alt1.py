my_message = labkit.user("这张图里有什么？", "images/coffee.jpg")
