"""The model-client layer shared by generation, critique, review and evaluation: request/result types
(types), the failure policy (failures), a stage's options per model (options), the factory (client), the
OpenAI-compatible backend (openai_client, composed of transport, dialects and structured; the sending
order in order, the adaptive limit in limit) and the
in-process one (hf_client), the reply cache (cache)."""
