"""The decision wing: evidence read against the rules into a verdict, and the record that carries it.

* :mod:`.verdict`: GO / CAUTION / NO-GO from typed evidence and :class:`~.verdict.Rules` (``verdict_rules.toml``).
* :mod:`.report`: a setup's analyses gathered (stored summaries, finished jobs), the manifest, the HTML report.
* :mod:`.panel`: the scenario panel that measures how often the verdict is right.

Importing the package imports nothing heavy; import the modules.
"""
