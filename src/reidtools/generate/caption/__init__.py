"""DLCR captioning: a vision-language model describes the clothes, a chat LLM summarises them."""
