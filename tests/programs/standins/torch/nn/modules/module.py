"""torch.nn.Module's call with the global hooks, as torch runs them (pre-hooks, forward,
then forward hooks; always_call hooks also when forward raises)."""
_pre, _post = [], []


def register_module_forward_pre_hook(hook):
    _pre.append(hook)


def register_module_forward_hook(hook, *, with_kwargs=False, always_call=False):
    _post.append((hook, always_call))


class Module:
    def __call__(self, *args):
        for h in _pre:
            h(self, args)
        try:
            out = self.forward(*args)
        except BaseException:
            for h, always in _post:
                if always:
                    h(self, args, None)
            raise
        for h, _ in _post:
            h(self, args, out)
        return out
