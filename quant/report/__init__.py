"""What a run writes and prints: the table and its notes as text, Markdown and JSON (``tables``), the
accuracy-vs-latency chart (``plot``), and github-action-benchmark's files (``gab``).

May import: quant.gate, quant.measure, quant.registry, quant.util.
"""
