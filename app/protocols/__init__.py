"""Standard inference protocols, each owning its routes and its error shape."""
