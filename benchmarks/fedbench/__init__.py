"""The federated benchmark's parts (``benchmarks/federated.py`` is the entry point).

- ``common``: progress lines, the machine header, Markdown tables, statistics, the data;
- ``fleet``: an Orchard fleet (SuperLink + real agents), Flower's floor fleet and app, the
  trainers' state log;
- one module per part: ``accuracy``, ``overhead``, ``traffic`` (bytes), ``inference``,
  ``simulation``;
- ``runner``: the command line, the work directory and its cleanup, the loop over the parts.

Imported as ``benchmarks.fedbench`` with the repository root on ``sys.path`` (see
``benchmarks/machine.py``).
"""
