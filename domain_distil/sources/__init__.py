"""Real data sources for ``task=prepare``: Stack Exchange dumps (TD corpus and top-10-tag task),
Wikipedia dumps (random 1 MB chunks), conversational files (with PII masking), and the seeded
sampling they share (GB budgets, exponent smoothing). See docs/data-sources.md.

Modules: ``stackexchange`` (Posts.xml reader), ``html_text`` (post HTML to text),
``td_task`` (task sampling), ``stackexchange_builder``, ``wikipedia``, ``conversational``,
``pii``, ``debian`` / ``debian_index`` / ``debian_apt`` / ``debian_text`` (corpus=debian,
docs/debian.md), ``sampling``, ``writers`` (prepared folder, markers, manifest), ``streams``
(7z streaming, positions, ``MalformedInputError``), ``progress``, ``synthetic`` (small dumps in
the real formats for tests and benchmarks).
"""
