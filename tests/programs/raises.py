import nvtx

for i in range(3):
    with nvtx.annotate("infer"):
        pass


def deep():
    raise ValueError("the program's own error")


deep()
