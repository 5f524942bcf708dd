"""Scoring new text with the trained model: paragraph labels, probabilities, evidence and the
document verdict (score), the `stance score` run over files and directories, its output formats
(table, JSON, CSV, Markdown, the self-contained HTML report) and large archives on Dask.
"""
