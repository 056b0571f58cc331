"""trainbot: run ms-swift fine-tuning jobs from Slack."""
