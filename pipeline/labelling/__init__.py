"""Labelling: the terminal session (`stance label`) with its queue of the paragraphs the model is
least sure of and its crash-safe label file, import and export with Label Studio and doccano,
checks for labels that look wrong, and agreement between annotators.
"""
