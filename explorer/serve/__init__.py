"""Serving the explorer to a class: kernels forked from one warm process, a capped and culled Voila, JupyterHub."""
