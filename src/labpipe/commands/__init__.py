"""CLI command groups; each module exposes register(subparsers) and keeps imports lazy."""
