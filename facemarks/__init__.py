"""facemarks: facial landmark localisation, with a fair comparison of losses and models."""

__version__ = "0.1.0"
