"""The dataset as users get it: WebDataset shards, captions, the validation report, the card."""
