"""What operators see: request context, metrics, logs; and giving memory back."""
