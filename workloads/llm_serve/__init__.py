"""llm-serve: an OpenAI-compatible completions endpoint for the newest llm-finetune export."""
