import contextlib

_stack = []


def range_push(msg):
    _stack.append(msg)
    return len(_stack) - 1


def range_pop():
    _stack.pop()
    return len(_stack)


@contextlib.contextmanager
def range(msg):  # noqa: A001  (torch's name)
    range_push(msg)
    try:
        yield
    finally:
        range_pop()
