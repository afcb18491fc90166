import contextlib

_stack = []


def range_push(msg):
    _stack.append(msg)
    return len(_stack) - 1


def range_pop():  # (torch's: -1 when no range is open)
    if not _stack:
        return -1
    _stack.pop()
    return len(_stack)


@contextlib.contextmanager
def range(msg, *args, **kwargs):  # noqa: A001  (torch's name and its message formatting)
    range_push(msg.format(*args, **kwargs))
    try:
        yield
    finally:
        range_pop()
