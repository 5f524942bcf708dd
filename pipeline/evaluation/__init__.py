"""Measuring the model: the evaluate stage (nested grouped cross-validation, baselines on the same
folds, metrics and calibration), the learning curve, plots, the Markdown report, the CI quality
gate, the evaluation on real pages nobody on the team wrote, and the corpus exported as a Hugging
Face dataset with the evaluation's held-out split.
"""
