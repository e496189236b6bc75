"""Model helpers: the tiny-model kit and model loading from a local path or s3://."""
