"""GPT-2 in Hugging Face's folder format: import/export (gpt2.py), the local HF cache (cache.py), `python -m gpt.hf`."""
