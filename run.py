"""Entry point in a checkout: ``python run.py [overrides]`` is ``domain-distil [overrides]``.

    python run.py                                   # the embedded demo, end to end, on CPU
    python run.py task=distill teacher=mbert corpus=text corpus.dir=data/my_corpus
    python run.py -m seed='range(10)' lang=eng,esp,jap,por,rus

The tasks live in ``domain_distil/tasks/``; ``docs/architecture.md`` maps every stage.
"""

from domain_distil.cli import main

if __name__ == "__main__":
    main()
