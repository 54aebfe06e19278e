"""Independent NumPy implementations of the example models, with random inputs:
the expectations the compiled examples are tested against."""

from __future__ import annotations

import numpy as np


def _lse(a, axis=None):
    m = np.max(a, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return out.squeeze() if axis is None else np.squeeze(out, axis)


def _softmax(a, axis):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def logistic_predict(w, b, X):
    return 1 / (1 + np.exp(-(X @ w + b)))


def logistic_loss(w, b, X, y):
    p = logistic_predict(w, b, X)
    return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))


def mlp(W1, b1, W2, b2, X):
    return np.tanh(X @ W1.T + b1) @ W2.T + b2


def mlp_loss(W1, b1, W2, b2, X, Y):
    logits = mlp(W1, b1, W2, b2, X)
    logp = logits - _lse(logits, axis=1)[:, None]
    return -np.mean(np.sum(Y * logp, axis=1))


def attention(Wq, Wk, Wv, X):
    Q, K, V = X @ Wq, X @ Wk, X @ Wv
    return _softmax(Q @ K.T / np.sqrt(Wq.shape[1]), axis=1) @ V


def causal_attention(Wq, Wk, Wv, X):
    Q, K, V = X @ Wq, X @ Wk, X @ Wv
    s = Q @ K.T / np.sqrt(Wq.shape[1])
    t = X.shape[0]
    s = np.where(np.tril(np.ones((t, t), bool)), s, -1.0e30)
    return _softmax(s, axis=1) @ V


def gmm(alphas, means, icf, x, gamma, wm):
    """ADBench's GMM objective without its parameter-free constant, written with loops."""
    n, d = x.shape
    k = alphas.shape[0]
    total = 0.0
    for i in range(n):
        terms = []
        for c in range(k):
            q, l = icf[c, :d], icf[c, d:]
            Q = np.diag(np.exp(q))
            pos = 0
            for j in range(d):
                for r in range(j + 1, d):
                    Q[r, j] = l[pos]
                    pos += 1
            v = Q @ (x[i] - means[c])
            terms.append(alphas[c] + q.sum() - 0.5 * v @ v)
        total += _lse(np.array(terms))
    prior = sum(0.5 * gamma**2 * (np.sum(np.exp(icf[c, :d]) ** 2) + np.sum(icf[c, d:] ** 2))
                - wm * np.sum(icf[c, :d]) for c in range(k))
    return total - n * _lse(alphas) + prior - 0.5 * n * d * np.log(2 * np.pi)


def rnn_states(Wx, Wh, b, xs):
    h = np.zeros(Wh.shape[0])
    out = []
    for x in xs:
        h = np.tanh(Wx @ x + Wh @ h + b)
        out.append(h)
    return np.array(out)


def rnn_last(Wx, Wh, b, xs):
    return rnn_states(Wx, Wh, b, xs)[-1]


def inputs(rng: np.random.Generator) -> dict[str, tuple[tuple, object]]:
    """For every (file, function): random arguments and the expected result."""
    r = rng.standard_normal
    n, d, h, c, t, e, k = 5, 3, 4, 3, 4, 2, 3
    w, b, X, y = r(d), float(r()), r((n, d)), (rng.random(n) > 0.5).astype(float)
    W1, b1, W2, b2 = r((h, d)), r(h), r((c, h)), r(c)
    Y = np.eye(c)[rng.integers(0, c, n)]
    Wq, Wk, Wv, Xt = r((d, e)), r((d, e)), r((d, e)), r((t, d))
    m = d + d * (d - 1) // 2
    alphas, means, icf, xg = r(k), r((k, d)), 0.3 * r((k, m)), r((n, d))
    Wx, Wh, bh, xs = 0.5 * r((h, d)), 0.5 * r((h, h)), r(h), r((t, d))
    return {
        "logistic.predict": ((w, b, X), logistic_predict(w, b, X)),
        "logistic.loss": ((w, b, X, y), logistic_loss(w, b, X, y)),
        "mlp.mlp": ((W1, b1, W2, b2, X), mlp(W1, b1, W2, b2, X)),
        "mlp.loss": ((W1, b1, W2, b2, X, Y), mlp_loss(W1, b1, W2, b2, X, Y)),
        "attention.attention": ((Wq, Wk, Wv, Xt), attention(Wq, Wk, Wv, Xt)),
        "attention.causal_attention": ((Wq, Wk, Wv, Xt), causal_attention(Wq, Wk, Wv, Xt)),
        "gmm.gmm": ((alphas, means, icf, xg, 1.5, 2), gmm(alphas, means, icf, xg, 1.5, 2)),
        "rnn.rnn_last": ((Wx, Wh, bh, xs), rnn_last(Wx, Wh, bh, xs)),
        "rnn.rnn_states": ((Wx, Wh, bh, xs), rnn_states(Wx, Wh, bh, xs)),
    }
