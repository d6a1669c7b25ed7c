"""Repository root: loads quant-bench's pytest plugin from this checkout when the
package is not installed (installed, its entry point has loaded it under the same name, and this does nothing)."""

pytest_plugins = ["quant.run.plugin"]
