"""facemarks: facial landmark localisation, with a fair comparison of losses and models."""

__version__ = "0.1.0"


def __getattr__(name):
    # `facemarks.load(...)` without importing torch and OpenCV on `import facemarks`
    # (the command line reads __version__ on every start).
    if name == "load":
        from facemarks.inference.predictor import load

        return load
    raise AttributeError(f"module 'facemarks' has no attribute {name!r}")
