"""Small utilities shared by every stage: content hashing, atomic writes, run records."""
