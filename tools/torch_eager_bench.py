#!/usr/bin/env python3
"""The PyTorch side of the GPU device check: ms/step of a GPT-2 (nanoGPT's layout: learned positions, pre-LN,
GELU MLP, tied head, vocab 50304) in PyTorch eager with bf16 autocast and fused AdamW, on the shapes blr is timed
on in the same run. Prints one JSON object per shape. Usage: torch_eager_bench.py STEPS [cuda|cpu]"""
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(width)
        self.c_attn = nn.Linear(width, 3 * width)
        self.c_proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.c_fc = nn.Linear(width, 4 * width)
        self.mlp_proj = nn.Linear(4 * width, width)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, layers, width, heads, context, vocab=50304):
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(context, width)
        self.h = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.apply(lambda m: nn.init.normal_(m.weight, std=0.02) if isinstance(m, (nn.Linear, nn.Embedding)) else None)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.h:
            x = block(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


def bench(name, layers, width, heads, seq, batch, steps, device):
    torch.manual_seed(1337)
    model = GPT(layers, width, heads, seq).to(device)
    fused = device == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, fused=fused)
    x = torch.randint(0, 50257, (batch, seq + 1), device=device)
    times = []
    for step in range(steps):
        start = time.perf_counter()
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            loss = model(x[:, :-1], x[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    steady = times[len(times) // 4:] if len(times) > 4 else times
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else math.nan
    print(json.dumps({"shape": name, "ms_per_step": sum(steady) / len(steady), "peak_mib": peak, "torch": torch.__version__}))
    del model, optimizer
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


if __name__ == "__main__":
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    device = sys.argv[2] if len(sys.argv) > 2 else "cuda"
    bench("8L-512w-seq512-b32", 8, 512, 8, 512, 32, steps, device)
    bench("gpt2-small-seq1024-b16", 12, 768, 12, 1024, 16, steps, device)
