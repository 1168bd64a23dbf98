"""The real-time path: socket frames in, store-and-publish in Redis, out to every socket."""
