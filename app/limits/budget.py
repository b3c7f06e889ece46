"""The memory that request bodies and fetched images may hold at once, across all requests.

Bodies are read, and URLs fetched, before a request may take a prediction slot
(app/limits/admission.py), so they need a bound of their own. A count of uploads would
let a crowd of stalled clients, each holding a few bytes, lock everyone else
out; bytes are what cost memory, so bytes are what is counted. Past the budget
(UPLOAD_BUFFER_MB), a request's next bytes are refused with 503 and Retry-After.
"""

from app.errors import Overloaded


class UploadBudget:
    def __init__(self, capacity_bytes: int) -> None:
        self.capacity = capacity_bytes
        self.used = 0

    def reservation(self) -> "Reservation":
        return Reservation(self)


class Reservation:
    """One request's share of the budget, given back when the request ends."""

    def __init__(self, budget: UploadBudget) -> None:
        self.budget = budget
        self.held = 0

    def add(self, size: int) -> None:
        if self.budget.used + size > self.budget.capacity:
            raise Overloaded(
                "overloaded", "The server is receiving too much at once; try again shortly."
            )
        self.budget.used += size
        self.held += size

    def release(self) -> None:
        self.budget.used -= self.held
        self.held = 0
