"""Feedback: people confirm or correct answers, and the photos and what they said become a
dataset fastai trains on (docs/api.md, "Was it right?"). No web framework here: the
command line exports with it too."""
