"""Plain-text corpora to memory-mapped token shards (tokenised once, cached by content hash)."""
