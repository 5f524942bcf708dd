"""The classifier: feature building (words, embedding, document context), the document-grouped
hyper-parameter search, the train stage, out-of-fold probabilities under nested grouped
cross-validation, the saved model with its metadata, and the reference set of training paragraphs
used for evidence and out-of-domain checks. It builds on the encoder and the corpus.
"""
