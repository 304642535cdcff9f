"""The compiled policy: pure, synchronous decisions on connections and requests."""
