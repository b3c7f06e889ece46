"""What keeps one client from taking the service down: headers, bodies, memory, slots."""
