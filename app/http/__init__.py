"""The HTTP surfaces: the JSON API, the page, their errors and the OpenAPI document."""
