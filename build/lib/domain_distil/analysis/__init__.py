"""The paper's analyses: Table 8 with significance tests, the homonym cosines (Table 7), speed (Table 5)."""
