"""The hub's refusal: an HTTP status and a one-line message shown to the caller as is."""


class HubError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
