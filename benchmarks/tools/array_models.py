"""The four objectives written once against a NumPy-like namespace `xp`
(jax.numpy, autograd.numpy), for the tools that trace them."""

from __future__ import annotations

import numpy as np

from benchmarks.manual import LOG_2PI, tril_index


def lower_gather_index(d: int) -> np.ndarray:
    """For a d x d matrix, the column of `[l_k, 0]` each entry comes from: the
    strictly lower part from l_k (column by column), everything else from the 0."""
    index = np.full((d, d), d * (d - 1) // 2, dtype=np.int64)
    rows, cols = tril_index(d)
    index[rows, cols] = np.arange(len(rows))
    return index


def objectives(xp, time_loop):
    """{problem: objective(*args)}; `time_loop(step, state, xs)` runs `step(state, x)`
    over the rows of xs and returns the stacked outputs (a scan)."""

    def lse(a, axis):
        shift = xp.max(a, axis=axis, keepdims=True)
        return xp.log(xp.sum(xp.exp(a - shift), axis=axis)) + xp.squeeze(shift, axis)

    def gmm(alphas, means, icf, x, gamma, wm):
        n, d = x.shape
        k = alphas.shape[0]
        qs, ls = icf[:, :d], icf[:, d:]
        lower = xp.concatenate([ls, xp.zeros((k, 1))], axis=1)[:, lower_gather_index(d)]
        Q = lower + xp.exp(qs)[:, :, None] * np.eye(d)
        xc = x[:, None, :] - means[None, :, :]
        z = xp.einsum("kde,nke->nkd", Q, xc)
        beta = alphas + xp.sum(qs, axis=1) - 0.5 * xp.sum(z * z, axis=2)
        prior = 0.5 * gamma * gamma * (xp.sum(xp.exp(qs) ** 2) + xp.sum(ls ** 2)) - wm * xp.sum(qs)
        return xp.sum(lse(beta, 1)) - n * lse(alphas, 0) + prior - 0.5 * n * d * LOG_2PI

    def lstm(main, extra, state, seq):
        n_layers = main.shape[0]

        def step(s, x):
            inp = x * extra[0]
            new = []
            for i in range(n_layers):
                w, bias = main[i, 0], main[i, 1]
                hidden = s[i, 0]
                forget = 1.0 / (1.0 + xp.exp(-(inp * w[0] + bias[0])))
                ingate = 1.0 / (1.0 + xp.exp(-(hidden * w[1] + bias[1])))
                outgate = 1.0 / (1.0 + xp.exp(-(inp * w[2] + bias[2])))
                change = xp.tanh(hidden * w[3] + bias[3])
                cell = s[i, 1] * forget + ingate * change
                inp = outgate * xp.tanh(cell)
                new.append(xp.stack([inp, cell]))
            return xp.stack(new), inp

        ys_hidden = time_loop(step, state, seq[:-1])
        ypred = ys_hidden * extra[1] + extra[2]
        lse_rows = xp.log(xp.sum(xp.exp(ypred), axis=1) + 2.0)
        targets = seq[1:]
        total = xp.sum(targets * ypred) - xp.sum(xp.sum(targets, axis=1) * lse_rows)
        return -total / ((seq.shape[0] - 1) * seq.shape[1])

    def mlp(W1, b1, W2, b2, X, Y):
        H = xp.tanh(X @ W1.T + b1)
        logits = H @ W2.T + b2
        return xp.mean(lse(logits, 1) - xp.sum(Y * logits, axis=1))

    def lse_vector(x):
        a = xp.max(x)
        return a + xp.log(xp.sum(xp.exp(x - a)))

    return {"gmm": gmm, "lstm": lstm, "mlp": mlp, "lse": lse_vector}
