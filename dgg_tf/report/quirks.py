"""What each quirk Q1..Q12 is: its title, its switch, what the code does and what the
paper says (section numbers of docs/quirks.md in brackets). The switch line of a quirk that has a
switch in ``CHOICES`` is written from CHOICES, so it always lists the allowed values."""
from __future__ import annotations

from dgg_tf.report.switches import switch_line

REPORT_FORMAT = "dgg_tf-report-v1"
QUIRK_IDS = tuple(f"Q{i}" for i in range(1, 13))
TEXT_KEYS = ("title", "switch", "code", "paper")

#: The CHOICES switch of each quirk that has one.
QUIRK_SWITCHES = {"Q1": "neighbor_selection", "Q3": "gmm_init_posterior",
                  "Q4": "classifier_input", "Q5": "classifier_pretrain_loss",
                  "Q7": "sigma_mode", "Q8": "lr_schedule", "Q9": "prior",
                  "Q10": "gmm_coefficient"}

#: Switch lines of the quirks without a CHOICES switch.
_OTHER_SWITCHES = {
    "Q2": "kmeans_n_init: 10 (code) / 1",
    "Q6": "similarity: student_t implements the evident intent",
    "Q11": "none (dgg_tf.pretrain implements section 9)",
    "Q12": "none (training records both running and full-pass)",
}

_TEXTS = {
    "Q1": ("Neighbours drawn at random from the top 100",
           "Siamesev0.py keeps the sample plus 40 columns drawn at random (per row, no "
           "seed) from its 100 nearest in the Siamese embedding; DGG.py trains on the "
           "sample plus the first 20 of those random picks [section 2].",
           "The graph links each sample to its nearest neighbours in the Siamese "
           "embedding (Omega_i = the 20 nearest)."),
    "Q2": ("K-means with 10 restarts (library default changed)",
           "K-means (K = 10, random_state 0) with 10 restarts, scikit-learn's default "
           "when the code was written [section 4].",
           "Not specified; scikit-learn >= 1.4 defaults to a single k-means++ restart, "
           "so a naive port silently runs 1."),
    "Q3": ("GMM-init posterior without mixing weights",
           "The 'GMM ACC' printed at init takes gamma_ik proportional to "
           "prod_d N(x_id | m_dk, s_dk^2) in float32 probability space (+1e-10 in the "
           "denominator), without pi_k [section 4].",
           "A GMM posterior weighs each component by its mixing weight: gamma_ik "
           "proportional to pi_k N(x_i | m_k, s_k^2) (pi_k = K-means cluster fractions)."),
    "Q4": ("Classifier fed x_mean, not the sampled z",
           "f2 is applied to the encoder mean x_mean everywhere in the MNIST code "
           "[section 5].",
           "f2 takes the sampled z = mu + exp(logvar / 2) * eps (as the HAR and Reuters "
           "scripts of the same repository do)."),
    "Q5": ("Classifier pretraining: cross-entropy over softmax outputs",
           "CrossEntropyLoss is applied to the softmax OUTPUT of f2, i.e. a second "
           "log-softmax on top of probabilities [section 5].",
           "Pretrain f2 on the K-means labels with the plain cross-entropy "
           "-log p[target] of its probabilities."),
    "Q6": ("Student-t similarity crashes",
           "'Student-t' calls the torch module as a function and raises TypeError; the "
           "evident intent is 1/(1 + dist), self = sum of the neighbours, normalised "
           "[section 6].",
           "Student-t is one of the graph weights; the port implements the intent as "
           "1/(1 + dist/sigma) with the configured sigma_mode."),
    "Q7": ("sigma replaced by row 11 of the sorted batch distances",
           "The sigma argument (10) is ignored: column j is divided by the j-th smallest "
           "distance of batch ROW 11 (the 12th sample); column 0 is 0/0 before being "
           "overwritten; a batch under 12 samples raises IndexError [section 6].",
           "Distance-based weights use the fixed bandwidth sigma (10): "
           "exp(-||x_i - x_j||^2 / sigma)."),
    "Q8": ("StepLR stepped at epoch start (decay one epoch early)",
           "scheduler.step() runs at the START of each epoch, so 0-based epoch e runs at "
           "base * gamma ** ((e + 1) // step): the first decay comes one epoch early "
           "[section 7]; the same for the Siamese and classifier schedules.",
           "StepLR(step, gamma) as named: base * gamma ** (e // step)."),
    "Q9": ("Prior pc vs the paper's Lagrangian pi",
           "pc_i = sum_{j incl. self} w_ij f2(x_mean_j), NOT normalised, from the "
           "pre-step weights without gradient; log(pc) with no epsilon [section 7], so a "
           "softmax that gives a cluster exactly 0 over a whole neighbourhood makes the "
           "prior term 0 * log 0, not a number, and stops training.",
           "pi_ik proportional to sum_{j in Omega_i} w_ij (gamma_ik + gamma_jk), "
           "normalised over k, gamma from the paper's classifier input, held constant "
           "[section 8]."),
    "Q10": ("Coefficient of E[log p(z|c)]: paper 1, code 1/2",
            "The gmm term -1/2 sum_d [log(2 pi s^2) + ((mu - m)^2 + exp(logvar)) / s^2] "
            "enters with coefficient 1/2, as in the supplement and VaDE.",
            "The main text's bound writes coefficient 1 (a typo per the seed write-up), "
            "i.e. twice the code's gmm term; the supplement's derivation gives 1/2. Both "
            "presets keep 1/2; gmm_coefficient=1.0 trains with the main text's 1."),
    "Q11": ("Pretraining fallback unreachable (NameError)",
            "With use_trainedweight = 0, DGG.py passes an undefined w_init and stops with "
            "NameError: the layer-wise pretraining fallback never ran; every reported "
            "result starts from VaDE's autoencoder weights [section 9].",
            "Greedy layer-wise autoencoder pretraining then end-to-end fine-tuning; "
            "reproduce/pretrain_mnist.py implements that recipe."),
    "Q12": ("Epoch ACC/NMI from running predictions; NMI 'max' here",
            "An epoch's ACC/NMI are computed over the predictions made after each step "
            "(weights from the whole epoch); NMI uses average_method 'max' during "
            "training and 'arithmetic' at init [section 7].",
            "Clustering accuracy and NMI of the model on all samples (a full pass)."),
}


def quirk_text(qid):
    """{title, switch, code, paper} of one quirk, the switch line from the current CHOICES."""
    title, code, paper = _TEXTS[qid]
    switch = switch_line(QUIRK_SWITCHES[qid]) if qid in QUIRK_SWITCHES else _OTHER_SWITCHES[qid]
    return {"title": title, "switch": switch, "code": code, "paper": paper}


def measured_part(quirk):
    """A quirk entry without its text keys: only the measurements."""
    return {k: v for k, v in quirk.items() if k not in TEXT_KEYS}


#: What the code does and what the paper says, per quirk (as of import time).
QUIRKS = {qid: quirk_text(qid) for qid in QUIRK_IDS}
