"""The benchmark's options, hooks and fixtures are quant-bench's pytest plugin (quant.run.plugin, registered by
the installed package); this folder's benchmark asks it to run."""

quant_bench = True
