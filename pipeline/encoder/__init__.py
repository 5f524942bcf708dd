"""The sentence encoder: which embedding model and precision to use (identity), the packaged model
weights, the PyTorch (sentence-transformers) and OpenVINO backends with the one-time OpenVINO
export checked against PyTorch, and the embed stage with its on-disk embedding cache. It turns
text into vectors and knows nothing about labels or classifiers.
"""
