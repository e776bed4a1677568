"""image-serve: the Ray Serve app of the image-train model (see app.py)."""
