model_name = labkit.load_settings().model
