"""perfsmith's local inference engine: compressed models, speculative decoding, batching,
constrained output, served over an OpenAI-compatible API."""
