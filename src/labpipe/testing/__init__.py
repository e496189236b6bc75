"""Test helpers that ship with labpipe: a deterministic fake OpenAI-compatible teacher server."""
