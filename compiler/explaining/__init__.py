"""Explanations, at compile time (issue 26): where the network splits into the body that
makes its last spatial feature map and the head that pools it (split.py), that head behind
an If in the served graph (graph.py), and the proof against torch's Recipro-CAM on the
learner (proof.py). docs/models.md, "Where did it look?", says what and why."""
