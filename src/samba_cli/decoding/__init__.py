"""The search stage: encoder frames of segments -> token hypotheses.

- :mod:`~samba_cli.decoding.decode`: :func:`decode`, the one entry point (the pipeline's and `samba eval`'s);
- :mod:`~samba_cli.decoding.attention`: the attention decoder's greedy and beam searches, teacher-forced scoring;
- :mod:`~samba_cli.decoding.ctc`: CTC decoding (greedy, prefix beam search, attention rescoring);
- :mod:`~samba_cli.decoding.prefix_search`: the model-free CTC prefix search with a language model and lexicon;
- :mod:`~samba_cli.decoding.pool`: the worker processes that run prefix searches in parallel;
- :mod:`~samba_cli.decoding.stepper`: one decoder step at a time (eager, or replayed from CUDA graphs);
- :mod:`~samba_cli.decoding.lm`: the word n-gram language model and the lexicon.

This package's ``__init__`` imports nothing: the search workers import the prefix search without torch.
"""
