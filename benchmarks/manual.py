"""Hand-written NumPy objectives and gradients: ADBench's "manual" reference.

Each `*_objective` returns a float; each `*_gradient` returns the objective and
a tuple of gradients, in the order of the problem's `wrt` arguments.
"""

from __future__ import annotations

import numpy as np

LOG_2PI = 1.8378770664093453


def _lse_rows(a: np.ndarray) -> np.ndarray:
    """logsumexp over the last axis."""
    shift = a.max(axis=-1, keepdims=True)
    return np.log(np.exp(a - shift).sum(axis=-1)) + shift[..., 0]


# ---------------------------------------------------------------- GMM

def tril_index(d: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the strictly lower part of a d x d matrix, column by
    column: the order in which `icf[:, d:]` lists it."""
    rows, cols = [], []
    for j in range(d):
        for i in range(j + 1, d):
            rows.append(i)
            cols.append(j)
    return np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64)


def _gmm_forward(alphas, means, icf, x):
    k, d = means.shape
    qs, ls = icf[:, :d], icf[:, d:]
    rows, cols = tril_index(d)
    Q = np.zeros((k, d, d))
    Q[:, rows, cols] = ls
    diag = np.exp(qs)
    Q[:, np.arange(d), np.arange(d)] = diag
    xc = x[:, None, :] - means[None, :, :]                     # n, k, d
    z = np.einsum("kde,nke->nkd", Q, xc, optimize=True)         # Q_k (x_i - mu_k)
    beta = alphas + qs.sum(axis=1) - 0.5 * np.einsum("nkd,nkd->nk", z, z, optimize=True)
    return qs, ls, rows, cols, Q, diag, xc, z, beta


def gmm_objective(alphas, means, icf, x, gamma, wm):
    n, d = x.shape
    qs, ls, *_, beta = _gmm_forward(alphas, means, icf, x)
    prior = 0.5 * gamma * gamma * (np.sum(np.exp(qs) ** 2) + np.sum(ls ** 2)) - wm * np.sum(qs)
    return float(_lse_rows(beta).sum() - n * _lse_rows(alphas) + prior - 0.5 * n * d * LOG_2PI)


def gmm_gradient(alphas, means, icf, x, gamma, wm):
    n, d = x.shape
    qs, ls, rows, cols, Q, diag, xc, z, beta = _gmm_forward(alphas, means, icf, x)
    lse_beta = _lse_rows(beta)
    lse_alpha = _lse_rows(alphas)
    prior = 0.5 * gamma * gamma * (np.sum(diag ** 2) + np.sum(ls ** 2)) - wm * np.sum(qs)
    value = float(lse_beta.sum() - n * lse_alpha + prior - 0.5 * n * d * LOG_2PI)

    r = np.exp(beta - lse_beta[:, None])                       # responsibilities, n x k
    r_sum = r.sum(axis=0)
    d_alphas = r_sum - n * np.exp(alphas - lse_alpha)
    rz = r[:, :, None] * z                                     # n, k, d
    d_means = np.einsum("kde,nkd->ke", Q, rz, optimize=True)   # sum_i r Q^T z
    d_Q = -np.einsum("nkd,nke->kde", rz, xc, optimize=True)    # sum_i -r z (x - mu)^T
    d_icf = np.empty_like(icf)
    d_icf[:, :d] = (d_Q[:, np.arange(d), np.arange(d)] * diag + r_sum[:, None]
                    + gamma * gamma * diag ** 2 - wm)
    d_icf[:, d:] = d_Q[:, rows, cols] + gamma * gamma * ls
    return value, (d_alphas, d_means, d_icf)


# ---------------------------------------------------------------- LSTM

def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _lstm_forward(main, extra, state, seq, keep):
    """Run the LSTM over `seq`; with `keep`, record every gate for the reverse sweep."""
    n_layers = main.shape[0]
    s = state.copy()
    total, tape = 0.0, []
    for t in range(seq.shape[0] - 1):
        inp = seq[t] * extra[0]
        layers = []
        for i in range(n_layers):
            w, bias = main[i, 0], main[i, 1]
            hidden, cell_prev = s[i, 0], s[i, 1]
            forget = _sigmoid(inp * w[0] + bias[0])
            ingate = _sigmoid(hidden * w[1] + bias[1])
            outgate = _sigmoid(inp * w[2] + bias[2])
            change = np.tanh(hidden * w[3] + bias[3])
            cell = cell_prev * forget + ingate * change
            tanh_cell = np.tanh(cell)
            new_hidden = outgate * tanh_cell
            if keep:
                layers.append((inp, hidden, cell_prev, forget, ingate, outgate, change, tanh_cell))
            s = s.copy() if keep else s
            s[i, 0], s[i, 1] = new_hidden, cell
            inp = new_hidden
        y = inp * extra[1] + extra[2]
        e = np.exp(y)
        lse = np.log(e.sum() + 2.0)
        target = seq[t + 1]
        total += float(target @ y - target.sum() * lse)
        if keep:
            tape.append((layers, inp, e / (e.sum() + 2.0), target, seq[t]))
    count = (seq.shape[0] - 1) * seq.shape[1]
    return -total / count, tape


def lstm_objective(main, extra, state, seq):
    return _lstm_forward(main, extra, state, seq, keep=False)[0]


def lstm_gradient(main, extra, state, seq):
    value, tape = _lstm_forward(main, extra, state, seq, keep=True)
    n_layers, b = main.shape[0], seq.shape[1]
    count = (seq.shape[0] - 1) * b
    d_main, d_extra = np.zeros_like(main), np.zeros_like(extra)
    d_state = np.zeros((n_layers, 2, b))           # cotangent of the state after step t
    for t in range(len(tape) - 1, -1, -1):
        layers, last_hidden, probs, target, char = tape[t]
        dy = -(target - target.sum() * probs) / count
        d_extra[1] += dy * last_hidden
        d_extra[2] += dy
        d_inp = dy * extra[1]
        d_prev = np.zeros((n_layers, 2, b))
        for i in range(n_layers - 1, -1, -1):
            inp, hidden, cell_prev, forget, ingate, outgate, change, tanh_cell = layers[i]
            w = main[i, 0]
            d_hid = d_state[i, 0] + d_inp
            d_cell = d_state[i, 1] + d_hid * outgate * (1.0 - tanh_cell ** 2)
            a_f = d_cell * cell_prev * forget * (1.0 - forget)
            a_i = d_cell * change * ingate * (1.0 - ingate)
            a_o = d_hid * tanh_cell * outgate * (1.0 - outgate)
            a_c = d_cell * ingate * (1.0 - change ** 2)
            d_main[i, 0] += (a_f * inp, a_i * hidden, a_o * inp, a_c * hidden)
            d_main[i, 1] += (a_f, a_i, a_o, a_c)
            d_inp = a_f * w[0] + a_o * w[2]
            d_prev[i, 0] = a_i * w[1] + a_c * w[3]
            d_prev[i, 1] = d_cell * forget
        d_extra[0] += d_inp * char
        d_state = d_prev
    return value, (d_main, d_extra)


# ---------------------------------------------------------------- MLP

def mlp_objective(W1, b1, W2, b2, X, Y):
    H = np.tanh(X @ W1.T + b1)
    logits = H @ W2.T + b2
    return float(np.mean(_lse_rows(logits) - np.sum(Y * logits, axis=1)))


def mlp_gradient(W1, b1, W2, b2, X, Y):
    n = X.shape[0]
    H = np.tanh(X @ W1.T + b1)
    logits = H @ W2.T + b2
    lse = _lse_rows(logits)
    value = float(np.mean(lse - np.sum(Y * logits, axis=1)))
    d_logits = (np.exp(logits - lse[:, None]) * Y.sum(axis=1, keepdims=True) - Y) / n
    d_W2 = d_logits.T @ H
    d_b2 = d_logits.sum(axis=0)
    d_pre = (d_logits @ W2) * (1.0 - H * H)
    return value, (d_pre.T @ X, d_pre.sum(axis=0), d_W2, d_b2)


# ---------------------------------------------------------------- logsumexp

def lse_objective(x):
    a = np.max(x)
    return float(a + np.log(np.sum(np.exp(x - a))))


def lse_gradient(x):
    a = np.max(x)
    e = np.exp(x - a)
    total = np.sum(e)
    return float(a + np.log(total)), (e / total,)
