"""llm-finetune: FSDP2 fine-tuning of a Hugging Face causal language model with Ray Train."""
