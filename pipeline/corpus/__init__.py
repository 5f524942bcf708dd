"""The corpus: documents read from disk and split into paragraphs with stable ids (prepare), new
documents added to `data/raw` (add), the label files and their resolution across annotators, and
the real development set of saved web pages (hydrated and checked by hash). Everything here reads
and writes project data; nothing here knows about embeddings or models.
"""
