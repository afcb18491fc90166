__version__ = "0.1.0"

# The distribution's name (pip's, and importlib.metadata's); the import name is gpuwatch. PyPI's
# "gpuwatch" is an unrelated project, and this one is not published: it installs from a clone.
DISTRIBUTION = "gpuwatch-latency"


def install_hint(extra: str) -> str:
    """The commands that install an optional extra of pyproject.toml: its packages (as the
    installed metadata lists them), or the extra itself from a clone. (The extra by the name
    gpuwatch would fetch PyPI's unrelated project.)"""
    import re
    from importlib.metadata import PackageNotFoundError, requires

    try:
        reqs = requires(DISTRIBUTION) or []
    except PackageNotFoundError:
        reqs = []
    marker = re.compile(rf"""\bextra\s*==\s*["']{re.escape(extra)}["']""")
    packages = " ".join(f"'{r.split(';')[0].strip()}'" for r in reqs if marker.search(r))
    clone = f"pip install -e '.[{extra}]'"
    return (f"pip install {packages} (or, in a clone of gpuwatch: {clone})" if packages
            else f"in a clone of gpuwatch: {clone}")
