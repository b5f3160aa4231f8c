"""Can the pose guider learn a pose-dependent map, and how fast, with He vs PyTorch's default init?

    .venv/bin/python bench/posegen_guider_init.py

A toy task isolated from the U-Net: vertical-bar "skeletons" at random columns, and a target at the
latent resolution (1/8) that depends on where the bar is. The guider (SD-size widths, zero last layer)
is trained with Adam 1e-4, batch 16; the test MSE on 64 held-out poses is printed every 100 steps next
to the MSE of predicting the mean pose (what a guider that ignores the pose can reach).
"""

import torch
from torch import nn

from reidtools.generate.posegen.guider import PoseGuider

torch.set_num_threads(2)


def poses(n, g):
    x = torch.zeros(n, 3, 64, 32)
    cols = torch.randint(2, 30, (n,), generator=g)
    for i in range(n):
        x[i, :, 8:56, cols[i] - 1:cols[i] + 1] = 1
    return x


def target(x):  # depends on where the bar is, at the latent resolution
    return nn.functional.avg_pool2d(x[:, :1], 8).repeat(1, 4, 1, 1) * 4


for init in ["default", "he"]:
    torch.manual_seed(0)
    g = PoseGuider(3, 4, (16, 32, 96, 256))
    if init == "default":  # PyTorch's default init, as before the change
        for m in [g.conv_in, *g.blocks]:
            m.reset_parameters()
    opt = torch.optim.Adam(g.parameters(), 1e-4)
    gen = torch.Generator().manual_seed(1)
    test = poses(64, torch.Generator().manual_seed(9))
    for step in range(301):
        x = poses(16, gen)
        loss = (g(x) - target(x)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            with torch.no_grad():
                tl = (g(test) - target(test)).square().mean().item()
                base = (target(test) - target(test).mean(0, keepdim=True)).square().mean().item()
            print(init, step, f"test mse {tl:.4f}  (predicting the mean pose: {base:.4f})")
