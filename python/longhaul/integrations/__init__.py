"""longhaul inside other libraries' models: `longhaul.integrations.transformers` (Hugging Face)."""
