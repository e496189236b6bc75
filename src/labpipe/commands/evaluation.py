"""Placeholder until this command group lands; registers nothing."""


def register(sub) -> None:
    return None
