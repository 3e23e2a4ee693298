"""Memory, the third layer beside models and tools: knowledge bases agents search
(chunked, embedded, indexed for vector and full-text search, fused by rank) and
long-term memory of each end user."""
