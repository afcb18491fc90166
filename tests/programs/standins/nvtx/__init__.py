"""A stand-in for the nvtx package's Python API (push_range/pop_range, annotate)."""
_stack = []
def push_range(message=None, color=None, domain=None, category=None, payload=None):
    _stack.append(message)
def pop_range(domain=None):
    _stack.pop()
class annotate:
    def __init__(self, message=None, color=None, domain=None, category=None, payload=None):
        self.message = message
    def __enter__(self):
        _stack.append(self.message); return self
    def __exit__(self, *exc):
        _stack.pop(); return False
    def __call__(self, fn):
        def wrapped(*a, **k):
            with self: return fn(*a, **k)
        return wrapped
