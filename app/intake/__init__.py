"""Receiving a request's images: its body, and the URLs it names."""
