"""Thin adapters between gpuwatch's device protocol and vendor libraries (installed as
gpuwatch.bindings). Each module imports its vendor library lazily, inside functions, and fails
with a message naming the package to install; `sim` needs nothing but numpy.
"""
