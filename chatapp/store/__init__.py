"""The store: the Redis client (real or memory://) and the layout of every key."""
