# A torch model in a loop with time.sleep gaps, no markers: the top-level module call is the
# inference (its submodules are not timed on their own).
import time

import torch


class Conv(torch.nn.Module):
    def forward(self, x):
        return x + 1


class Net(torch.nn.Module):
    def __init__(self):
        self.body = torch.nn.Sequential(Conv(), Conv(), Conv())

    def forward(self, x):
        return self.body(x)


net = Net()
for i in range(30):
    net(i)
    time.sleep(0.01 if i < 15 else 0.06)
with torch.cuda.nvtx.range("marked"):  # an NVTX range around a model call: one region
    net(0)
print("torch done")
