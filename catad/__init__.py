"""catad: differentiable array programs compiled to readable NumPy."""
