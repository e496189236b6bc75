"""The model-client layer shared by generation, critique and evaluation: request/result types, the factory, the OpenAI-compatible and in-process backends, the reply cache."""
