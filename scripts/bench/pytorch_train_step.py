#!/usr/bin/env python3
"""PyTorch CPU reference for `cargo bench -p warble-trainer --bench train_step`.

The same ConvNeXt as warble's `micro` size (depths 2,2,2,2; dims 16,32,64,128; 1-channel
4x4/4 stem; depthwise 7x7 -> LayerNorm -> Linear x4 -> exact GELU -> Linear, layer scale
1e-6; LayerNorm + 2x2/2 conv downsampling; GAP -> LayerNorm -> Linear), batch 16 of
(1, 128, 501), Asymmetric Loss, AdamW: forward + backward + step, and forward alone.

Optional, never part of the test run. Needs torch (PyPI's build is ~4 GB with CUDA libs):
    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch
    /tmp/torchvenv/bin/python scripts/bench/pytorch_train_step.py --threads 2
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Block(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, 4 * dim)
        self.pw2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pw2(F.gelu(self.pw1(self.norm(y)))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(self, classes, depths=(2, 2, 2, 2), dims=(16, 32, 64, 128)):
        super().__init__()
        layers = [nn.Conv2d(1, dims[0], 4, stride=4), LayerNorm2d(dims[0], eps=1e-6)]
        for i, (d, w) in enumerate(zip(depths, dims)):
            if i > 0:
                layers += [LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], w, 2, stride=2)]
            layers += [Block(w) for _ in range(d)]
        self.features = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], classes)

    def forward(self, x):
        return self.head(self.norm(self.features(x).mean((2, 3))))


def asl(logits, y, gn=4.0, gp=1.0, clip=0.05, eps=1e-8):
    p = torch.sigmoid(logits)
    pn = (1 - p + clip).clamp(max=1)
    los = y * torch.log(p.clamp(min=eps)) + (1 - y) * torch.log(pn.clamp(min=eps))
    pt = p * y + pn * (1 - y)
    w = torch.pow(1 - pt, gp * y + gn * (1 - y))
    return -(los * w).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    model = ConvNeXt(25)
    print("parameters", sum(p.numel() for p in model.parameters()))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, eps=1e-8, weight_decay=1e-4)
    x = torch.randn(16, 1, 128, 501)
    y = torch.zeros(16, 25)
    for name, fn in [("train_step", True), ("forward", False)]:
        times = []
        for i in range(a.iters + 2):
            t = time.perf_counter()
            if fn:
                opt.zero_grad()
                asl(model(x), y).backward()
                opt.step()
            else:
                with torch.no_grad():
                    model(x)
            if i >= 2:
                times.append(time.perf_counter() - t)
        times.sort()
        print(f"{name}: median {1000 * times[len(times) // 2]:.1f} ms "
              f"(min {1000 * times[0]:.1f}, max {1000 * times[-1]:.1f}) threads={a.threads}")


if __name__ == "__main__":
    main()
