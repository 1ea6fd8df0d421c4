"""Independent NumPy (float64) reference of the DGG forward pass and ELBO terms,
written from docs/quirks.md (section 7), for checking the Keras implementation."""
import numpy as np


def relu(a):
    return np.maximum(a, 0.0)


def dense(params, name, h):
    return h @ params[f"{name}/W"].astype(np.float64) + params[f"{name}/b"].astype(np.float64)


def softmax(a):
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def encoder(params, x):
    h = relu(dense(params, "encoder1", x))
    h = relu(dense(params, "encoder2", h))
    h = relu(dense(params, "encoder3", h))
    return dense(params, "encoder4", h), dense(params, "logvar", h)


def decoder(params, z):
    h = relu(dense(params, "decoder1", z))
    h = relu(dense(params, "decoder2", h))
    h = relu(dense(params, "decoder3", h))
    return 1.0 / (1.0 + np.exp(-dense(params, "decoder4", h)))


def classify(params, h):
    return softmax(dense(params, "classifier", h))


def prior(gamma_nbrs, w, mode):
    B, Nn, K = gamma_nbrs.shape
    out = np.zeros((B, K))
    for i in range(B):
        if mode == "code":
            for j in range(Nn):
                out[i] += w[i, j] * gamma_nbrs[i, j]
        else:
            for j in range(1, Nn):
                out[i] += w[i, j] * (gamma_nbrs[i, 0] + gamma_nbrs[i, j])
            out[i] /= out[i].sum()
    return out


def terms(params, x_nbrs, w, eps, classifier_input="mean", prior_mode="code"):
    """Loop over samples i and columns j, straight from the formula."""
    x_nbrs = x_nbrs.astype(np.float64)
    B, Nn, D = x_nbrs.shape
    m_gmm = params["gmm/mean"].astype(np.float64)
    var = params["gmm/std"].astype(np.float64) ** 2
    mean, logvar = encoder(params, x_nbrs.reshape(B * Nn, D))
    mean, logvar = mean.reshape(B, Nn, -1), logvar.reshape(B, Nn, -1)
    z = mean + np.exp(0.5 * logvar) * eps
    g_mean = classify(params, mean)
    g = g_mean if classifier_input == "mean" else classify(params, z)
    pc = prior(g_mean if prior_mode == "code" else g, w, prior_mode)
    out = dict.fromkeys(["reconstruction", "gmm", "cluster_entropy", "latent_entropy", "prior"], 0.0)
    for i in range(B):
        t = x_nbrs[i, 0]
        for j in range(Nn):
            xh = decoder(params, z[i, j][None])[0]
            out["reconstruction"] += w[i, j] * np.sum(t * np.log(xh + 1e-10) + (1 - t) * np.log(1 - xh + 1e-10))
            lp = (-0.5 * np.sum(np.log(2 * np.pi * var), axis=0)
                  - 0.5 * np.sum(((mean[i, j][:, None] - m_gmm) ** 2 + np.exp(logvar[i, j])[:, None]) / var, axis=0))
            out["gmm"] += w[i, j] * np.sum(g[i, j] * lp)
            out["cluster_entropy"] += w[i, j] * np.sum(-g[i, j] * np.log(g[i, j] + 1e-10))
            out["latent_entropy"] += w[i, j] * 0.5 * np.sum(logvar[i, j])
            out["prior"] += w[i, j] * np.sum(g[i, j] * np.log(pc[i]))
    out["loss"] = -sum(out[k] for k in list(out)) / B
    return out


def random_params(config, rng, scale=0.3):
    sizes = [config.input_dim, *config.encoder_dims, config.latent_dim]
    p = {}
    for i in range(4):
        p[f"encoder{i + 1}/W"] = rng.normal(0, scale, (sizes[i], sizes[i + 1]))
        p[f"encoder{i + 1}/b"] = rng.normal(0, 0.1, sizes[i + 1])
    p["logvar/W"] = rng.normal(0, scale * 0.3, (sizes[3], sizes[4]))
    p["logvar/b"] = rng.normal(0, 0.1, sizes[4])
    rev = sizes[::-1]
    for i in range(4):
        p[f"decoder{i + 1}/W"] = rng.normal(0, scale, (rev[i], rev[i + 1]))
        p[f"decoder{i + 1}/b"] = rng.normal(0, 0.1, rev[i + 1])
    p["classifier/W"] = rng.normal(0, 1.0, (config.latent_dim, config.n_clusters))
    p["classifier/b"] = rng.normal(0, 0.1, config.n_clusters)
    p["gmm/mean"] = rng.normal(0, 1.0, (config.latent_dim, config.n_clusters))
    p["gmm/std"] = rng.uniform(0.5, 1.5, (config.latent_dim, config.n_clusters)) * rng.choice([-1, 1], (config.latent_dim, config.n_clusters))
    return {k: v.astype(np.float32) for k, v in p.items()}
