"""What the analysis pages compute from a run checkpoint (torch; loaded only when a page asks for it).

    zeroshot.py     zero_shot_logits_fn / set_logits_fn: images -> a set's zero-shot logits (its set head)
    checkpoints.py  a run checkpoint -> its pretrained θ₀, student and teacher models
    attributions.py Integrated Gradients, Saliency, Occlusion, Grad-CAM of one class's zero-shot logit
    attacks.py      FGSM / PGD (L∞) against the zero-shot head, and the robustness driver
    wise.py         the WiSE-FT curve: θ_α evaluated on ID/OOD sets for a grid of α

``tracer_core.api`` reaches these lazily (its import stays torch-free); training never imports them.
"""
