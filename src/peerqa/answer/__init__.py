"""Answering: from a question and its retrieved passages to a cited answer.

``question`` (what is asked), ``judge`` (does a passage support a sentence), ``outcome`` (the
plain "not covered"), ``extractive`` (quotes, offline), ``prompt``, ``verifier`` and ``written``
(a chat model's answer, verified). An answerer receives passages and the vocabulary, never the
retriever, and never calls another answerer: ``Assistant`` chooses and falls back.
"""
