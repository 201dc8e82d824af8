"""The RLM engine: imports neither IPython nor widgets, so it runs anywhere."""
