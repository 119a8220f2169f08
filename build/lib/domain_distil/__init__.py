"""domain-distil: domain-specific knowledge distillation of multilingual BERT (Lightning + Hydra).

Sub-packages, from the bottom up (imports only point down; ``tests/test_import_direction.py``):
``common`` → ``modeling``, ``corpus``, ``sources``, ``classification``, ``analysis``,
``conversion``, ``encoders`` → (top-level) ``lightning_modules``, ``datamodules``, ``callbacks`` →
``stages`` → ``tasks`` → ``cli``. ``docs/architecture.md`` draws the picture.
"""

__version__ = "0.1.0"
