model_name = settings.model
