"""PyTorch eager on the CPU in float64: torch.autograd.grad of the objective;
the objective alone runs under no_grad."""

from __future__ import annotations

import numpy as np

from benchmarks.manual import LOG_2PI
from benchmarks.problems import Problem
from benchmarks.tools import Prepared, missing

NAME = "pytorch"


def unavailable() -> str | None:
    return missing("torch", install="pip install torch==2.13.0")


def _objectives(torch):
    from benchmarks.tools.array_models import lower_gather_index

    def lse(a, dim):
        shift = a.max(dim=dim, keepdim=True).values.detach()
        return torch.log(torch.exp(a - shift).sum(dim=dim)) + shift.squeeze(dim)

    def gmm(alphas, means, icf, x, gamma, wm):
        n, d = x.shape
        k = alphas.shape[0]
        qs, ls = icf[:, :d], icf[:, d:]
        index = torch.from_numpy(lower_gather_index(d))
        lower = torch.cat([ls, torch.zeros((k, 1), dtype=ls.dtype)], dim=1)[:, index]
        Q = lower + torch.exp(qs)[:, :, None] * torch.eye(d, dtype=qs.dtype)
        xc = x[:, None, :] - means[None, :, :]
        z = torch.einsum("kde,nke->nkd", Q, xc)
        beta = alphas + qs.sum(dim=1) - 0.5 * (z * z).sum(dim=2)
        prior = 0.5 * gamma * gamma * ((torch.exp(qs) ** 2).sum() + (ls ** 2).sum()) - wm * qs.sum()
        return lse(beta, 1).sum() - n * lse(alphas, 0) + prior - 0.5 * n * d * LOG_2PI

    def lstm(main, extra, state, seq):
        n_layers = main.shape[0]
        hidden = [state[i, 0] for i in range(n_layers)]
        cells = [state[i, 1] for i in range(n_layers)]
        outputs = []
        for t in range(seq.shape[0] - 1):
            inp = seq[t] * extra[0]
            for i in range(n_layers):
                w, bias = main[i, 0], main[i, 1]
                forget = torch.sigmoid(inp * w[0] + bias[0])
                ingate = torch.sigmoid(hidden[i] * w[1] + bias[1])
                outgate = torch.sigmoid(inp * w[2] + bias[2])
                change = torch.tanh(hidden[i] * w[3] + bias[3])
                cells[i] = cells[i] * forget + ingate * change
                hidden[i] = outgate * torch.tanh(cells[i])
                inp = hidden[i]
            outputs.append(inp)
        ypred = torch.stack(outputs) * extra[1] + extra[2]
        lse_rows = torch.log(torch.exp(ypred).sum(dim=1) + 2.0)
        targets = seq[1:]
        total = (targets * ypred).sum() - (targets.sum(dim=1) * lse_rows).sum()
        return -total / ((seq.shape[0] - 1) * seq.shape[1])

    def mlp(W1, b1, W2, b2, X, Y):
        H = torch.tanh(X @ W1.T + b1)
        logits = H @ W2.T + b2
        return (lse(logits, 1) - (Y * logits).sum(dim=1)).mean()

    def lse_vector(x):
        a = x.max()
        return a + torch.log(torch.exp(x - a).sum())

    return {"gmm": gmm, "lstm": lstm, "mlp": mlp, "lse": lse_vector}


def prepare(problem: Problem, inputs: dict) -> Prepared:
    import torch

    f = _objectives(torch)[problem.name]
    args = tuple(torch.from_numpy(np.array(v)).requires_grad_(name in problem.wrt)
                 if isinstance(v, np.ndarray) else v for name, v in inputs.items())
    params = tuple(args[list(inputs).index(w)] for w in problem.wrt)

    def objective():
        with torch.no_grad():
            return f(*args)

    def gradient():
        value = f(*args)
        return value, torch.autograd.grad(value, params)

    return Prepared(objective, gradient,
                    lambda r: (float(r[0].detach()), tuple(g.detach().numpy() for g in r[1])))
